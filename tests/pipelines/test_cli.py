"""The `align` command line: help lists every command, convert writes a loadable directory,
bad input exits 2 with one located line (no traceback), bugs keep their tracebacks."""

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from pipelines.cli import COMMANDS, main
from tests.paths import CONFIGS, VARIANTS, VARIANTS_FILE


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_help_does_not_import_jax():
    code = "import sys; from pipelines.cli import main; main(['--help']); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_gate_dashboard_and_config_reader_do_not_import_jax():
    # CI gates and dashboards run in seconds without JAX; align.errors must not drag align.hub in
    mods = (
        "safety_evals.review.gate, safety_evals.review.dashboard, safety_evals.review.history, "
        "align.config_io"
    )
    code = f"import sys, {mods}; import align; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_command_module_has_the_interface():
    import importlib

    for name, (module, _) in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_unknown_model_exits_2_with_a_clear_message(capsys):
    assert main(["generate", "--model", "/no/such/model.gguf", "hi"]) == 2
    assert "not a file, a directory or a known name" in capsys.readouterr().err


def test_a_full_disk_is_not_bad_input(tmp_path):
    from pipelines.cli import user_error

    path = str(tmp_path / "metrics.jsonl")
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    assert user_error(full) == (f"error: {path}: No space left on device", 1)  # rerun after freeing space
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    assert user_error(denied) == (f"error: {path}: Permission denied", 2)


TINY_SFT = str(CONFIGS / "sft" / "tiny_cpu.yaml")


def test_config_error_is_one_located_line(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("output_dir: out\nmodel:\n  spec: preset:tiny\n  name: tiny\n")
    assert main(["sft", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"align sft: error: {cfg}:4: unknown key 'model.name'")
    assert "Traceback" not in err and err.count("\n") == 1


def test_data_error_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    data.write_text(json.dumps(good) + '\n{"messages": [{"role": "user", "content": 7}]}\n')
    args = [
        "sft",
        "--config",
        TINY_SFT,
        f"output_dir={tmp_path / 'run'}",
        f"data.path={data}",
        "data.skip_invalid=false",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"align sft: error: {data}, line 2, field 'messages[0].content'" in err and "Traceback" not in err


def test_missing_files_and_unknown_presets_exit_2(tmp_path, capsys):
    assert main(["pipeline", str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in capsys.readouterr().err
    run_dir = f"output_dir={tmp_path / 'run'}"
    assert main(["sft", "--config", TINY_SFT, run_dir, "model.spec=preset:nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    # per-variant RL with a variant weighting a reward model the pipeline does not train: caught before SFT
    out = f"output_dir={tmp_path / 'qs'}"
    tiny = str(CONFIGS / "quickstart_tiny.yaml")
    assert main(["pipeline", tiny, out, "rl_per_variant=true", VARIANTS]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"align pipeline: error: {VARIANTS_FILE}: variant 'chat': ")
    assert "['harmlessness'] match no reward model" in err and not (tmp_path / "qs").exists()
    # a mesh the devices cannot fill (the suite has 8 fake CPU devices): refused before anything is
    # written or loaded
    meshed = f"output_dir={tmp_path / 'meshed'}"
    assert main(["sft", "--config", TINY_SFT, meshed, "mesh.data=1", "mesh.fsdp=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("align sft: error: mesh (data, fsdp, tensor) = (1, 3, 1) does not fit")
    assert "data:" not in err and not (tmp_path / "meshed").exists()


def test_traceback_on_request_and_for_bugs(tmp_path, monkeypatch):
    from pipelines.stages import sft
    from align.config_io import ConfigError

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("nonsense_key: 1\n")
    monkeypatch.setenv("ALIGN_TRACEBACK", "1")
    with pytest.raises(ConfigError):
        main(["sft", "--config", str(cfg)])
    monkeypatch.delenv("ALIGN_TRACEBACK")

    def broken(args):
        raise ValueError("a bug, not an input error")

    monkeypatch.setattr(sft, "run", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["sft", "--config", str(cfg)])


def test_convert_hf_dir_round_trip(tmp_path):
    pytest.importorskip("torch")
    from align.data.testing import tiny_tokenizer
    from align.model.hf_io import load_hf_dir
    from tests.model.hf_reference import tiny_hf_model

    _, src = tiny_hf_model("gemma3", tmp_path / "src")
    tiny_tokenizer().save_pretrained(src)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    a, b = load_hf_dir(src), load_hf_dir(tmp_path / "out")
    tokens = jnp.asarray(np.arange(10)[None] % a.config.vocab_size, jnp.int32)
    args = (tokens, jnp.arange(10)[None], jnp.ones((1, 10), jnp.int32))
    np.testing.assert_array_equal(a(*args).logits, b(*args).logits)
    assert (tmp_path / "out" / "tokenizer.json").exists()


@pytest.mark.parametrize("stopped, code", [("sigterm", 143), ("non_finite", 1)])
def test_a_stage_command_that_stops_early_returns_its_exit_code(stopped, code):
    import argparse

    from pipelines.commands.config import run_config_command
    from pipelines.stages.sft import SFTConfig

    args = argparse.Namespace(config=TINY_SFT, overrides=[], print_config=False)
    assert run_config_command(args, SFTConfig, lambda config: {"stopped": stopped}, ("step",)) == code


@pytest.fixture
def tiny_hf_dir(tmp_path):
    """A tiny random model saved as a HF directory with the tiny test tokenizer (no generation config)."""
    from flax import nnx

    from align.data.testing import TINY_VOCAB_SIZE, tiny_tokenizer
    from align.model import Decoder, ModelConfig
    from align.model.hf_io import save_hf_dir

    model = Decoder(ModelConfig.tiny(vocab_size=TINY_VOCAB_SIZE), rngs=nnx.Rngs(0))
    return save_hf_dir(model, tmp_path / "src", tokenizer=tiny_tokenizer())


def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_convert_replaces_the_output_directory_whole(tiny_hf_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(tiny_hf_dir), str(out), "--max-shard-gb", "0.0001"]) == 0
    assert "model.safetensors.index.json" in _files(out) and "model.safetensors" not in _files(out)
    assert main(["convert", str(tiny_hf_dir), str(out)]) == 0  # one shard now: no stale index or shards
    assert [f for f in _files(out) if "safetensors" in f] == ["model.safetensors"]
    before = {name: (out / name).read_bytes() for name in _files(out)}

    import safetensors.numpy

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        main(["convert", str(tiny_hf_dir), str(out)])
    assert {name: (out / name).read_bytes() for name in _files(out)} == before  # the old export, intact
    assert _files(tmp_path) == ["out", "src"]  # no temporary directory left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not an export")
    assert main(["convert", str(tiny_hf_dir), str(tmp_path / "mine")]) == 2
    assert "notes.txt" in capsys.readouterr().err and (tmp_path / "mine" / "notes.txt").exists()


def test_convert_writes_the_generation_config(tiny_hf_dir, tmp_path):
    assert main(["convert", str(tiny_hf_dir), str(tmp_path / "a")]) == 0
    written = json.loads((tmp_path / "a" / "generation_config.json").read_text())
    assert (written["bos_token_id"], written["eos_token_id"], written["pad_token_id"]) == (2, [1, 6], 0)
    own = {"eos_token_id": [1, 6], "top_k": 64, "top_p": 0.95, "do_sample": True}
    (tiny_hf_dir / "generation_config.json").write_text(json.dumps(own))
    assert main(["convert", str(tiny_hf_dir), str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "generation_config.json").read_text()) == own  # the source's own


def test_generate_input_errors_are_one_line(tiny_hf_dir, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["generate", "--model", str(tiny_hf_dir), "-"]) == 2
    assert capsys.readouterr().err.strip() == "align generate: error: no prompts: standard input was empty"
    assert main(["generate", "--model", str(tiny_hf_dir), "--max-new-tokens", "600", "hi"]) == 2
    err = capsys.readouterr().err
    assert "--max-new-tokens=600 exceeds the model's max_seq_len=512" in err and "Traceback" not in err


def test_generate_json_prints_one_json_value_per_prompt(capsys):
    assert main(["generate", "--model", "preset:tiny", "--json", "--max-new-tokens", "9", "a", "b"]) == 0
    out = capsys.readouterr().out
    texts = [block.split("\n", 1)[1].strip("\n") for block in out.split("### ")[1:]]
    assert len(texts) == 2
    for text in texts:
        json.loads(text)


def test_sampling_options_and_unreadable_checkpoints_are_input_errors(tmp_path, capsys):
    assert main(["generate", "--temperature", "-1", "hi"]) == 2
    assert capsys.readouterr().err == "align generate: error: --temperature must be >= 0, got -1.0\n"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file")
    assert main(["convert", str(junk), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"align convert: error: {junk}: not a valid GGUF file: bad magic")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        # the reader decodes line by line: a bad byte is a row error at its line (align.data.files)
        ("latin1.jsonl", b'{"text": "caf\xe9"}\n', ", line 1: not UTF-8: byte 0xe9 at byte 14 of the line"),
        ("plain.jsonl.gz", b'{"text": "hi"}\n', ", line 1: not a gzip file or cut off"),
    ],
)
def test_a_data_file_that_cannot_be_decoded_is_one_line_naming_it(tmp_path, capsys, name, content, message):
    data = tmp_path / name
    data.write_bytes(content)
    run = [f"output_dir={tmp_path / 'run'}", f"data.path={data}", "data.skip_invalid=false"]
    assert main(["sft", "--config", TINY_SFT, *run]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"align sft: error: {data}{message}") and err.count("\n") == 1, err


def _command_that(monkeypatch, body):
    """`align sft` with its body replaced: what the boundary does with what a command lets through."""
    from pipelines.stages import sft

    monkeypatch.setattr(sft, "run", lambda args: body())
    return ["sft", "--config", TINY_SFT]


def test_os_errors_on_user_paths_are_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "no_such_dir" / "results.json"
    assert main(_command_that(monkeypatch, lambda: open(out, "w"))) == 2
    assert capsys.readouterr().err == f"align sft: error: {out}: directory {out.parent} does not exist\n"
    assert main(_command_that(monkeypatch, lambda: open(tmp_path))) == 2
    assert capsys.readouterr().err == f"align sft: error: {tmp_path}: Is a directory\n"


def test_the_same_errors_from_align_itself_are_bugs(tmp_path, monkeypatch):
    import align

    own = Path(align.__file__).parent / "no_such_table.json"
    with pytest.raises(FileNotFoundError):
        main(_command_that(monkeypatch, lambda: open(own)))
    with pytest.raises(UnicodeDecodeError):  # decoding bytes that came from no file
        main(_command_that(monkeypatch, lambda: b"\xff".decode()))
    monkeypatch.setenv("ALIGN_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError):  # a user error, but a traceback was asked for
        main(_command_that(monkeypatch, lambda: open(tmp_path / "missing.txt")))


def test_every_command_explains_itself(capsys):
    import importlib

    for name, (module, help_) in COMMANDS.items():
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and help_ in out and "exit codes:" in out, name
        if module.startswith("pipelines."):  # the command modules this package owns: every option says what
            parser = argparse.ArgumentParser()
            importlib.import_module(module).add_arguments(parser)
            assert all(a.help for a in parser._actions), [a.dest for a in parser._actions if not a.help]
