"""The `align` command line: help lists every command, convert writes a loadable directory,
bad input exits 2."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from pipelines.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_help_does_not_import_jax():
    code = "import sys; from pipelines.cli import main; main(['--help']); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_every_command_module_has_the_interface():
    import importlib

    for name, (module, _) in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_unknown_model_exits_2_with_a_clear_message(capsys):
    assert main(["generate", "--model", "/no/such/model.gguf", "hi"]) == 2
    assert "not a file, a directory or a known name" in capsys.readouterr().err


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
