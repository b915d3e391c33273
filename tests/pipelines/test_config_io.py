"""YAML configs -> frozen dataclasses: unknown keys name the key, file, line and nearest field;
typed overrides."""

import re
from pathlib import Path

import pytest

from align.data_dir import data_dir, data_path
from align.config_io import ConfigError, dump_yaml, load_config
from pipelines.pipeline import load_quickstart
from pipelines.stages.sft import SFTConfig
from reward_models.train import RMConfig

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_unknown_nested_key_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, "output_dir: out\noptim:\n  learning_rate: 1.0e-4\n  warmup_step: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, path)
    msg = str(e.value)
    assert f"{path}:4" in msg and "'optim.warmup_step'" in msg and "did you mean 'warmup_steps'?" in msg


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "output_dir: out\ntrian:\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: unknown key 'trian'; did you mean 'train'\?"):
        load_config(SFTConfig, path)


def test_overrides_are_typed_and_checked(tmp_path):
    path = write(
        tmp_path, "output_dir: out\ndata:\n  path: x.jsonl\n  heldout: {heldout_fraction: 0.1, seed: 3}\n"
    )
    config = load_config(
        SFTConfig,
        path,
        [
            "optim.learning_rate=1e-4",
            "train.batch_size=8",
            "data.packing=true",
            "train.lora={rank: 4, targets: [attn.q]}",
            "model.tokenizer=null",
        ],
    )
    assert config.optim.learning_rate == 1e-4 and isinstance(config.optim.learning_rate, float)
    assert config.train.batch_size == 8 and config.data.packing is True
    assert config.data.heldout.seed == 3 and config.data.heldout.heldout_fraction == 0.1
    assert config.train.lora.rank == 4 and config.train.lora.targets == ("attn.q",)
    with pytest.raises(ConfigError, match="train.batch_size must be an integer, got 'eight'"):
        load_config(SFTConfig, path, ["train.batch_size=eight"])
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        load_config(SFTConfig, path, ["train.batchsize=8"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(SFTConfig, path, ["train.batch_size"])


def test_dataclass_validation_is_reported_with_the_section(tmp_path):
    path = write(tmp_path, "output_dir: out\noptim: {schedule: exponential}\n")
    with pytest.raises(ConfigError, match="optim: OptimConfig.schedule='exponential'"):
        load_config(SFTConfig, path)
    with pytest.raises(ConfigError, match="missing required key\\(s\\) output_dir"):
        load_config(SFTConfig, write(tmp_path, "train: {batch_size: 2}\n"))


@pytest.mark.parametrize("cls,pattern", [(SFTConfig, "configs/sft/*.yaml"), (RMConfig, "configs/rm/*.yaml")])
def test_shipped_configs_load_and_round_trip(cls, pattern, tmp_path):
    files = sorted(ROOT.glob(pattern))
    assert len(files) >= 2
    for f in files:
        config = load_config(cls, f)
        again = load_config(cls, write(tmp_path, dump_yaml(config)))
        assert again == config, f


def test_a_bad_override_value_is_reported_at_the_override_not_the_file_line(tmp_path):
    path = write(tmp_path, "output_dir: out\ntrain:\n  batch_size: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, path, ["train.batch_size=eight"])
    msg = str(e.value)  # line 3 holds a valid value: pointing there would send the user to the wrong place
    assert f"{path} (override 'train.batch_size=eight')" in msg and f"{path}:3" not in msg
    with pytest.raises(ConfigError, match=r"override 'train.lora=\{rank: x\}'\): train.lora.rank must be"):
        load_config(SFTConfig, path, ["train.lora={rank: x}"])


def test_a_section_validation_error_names_the_section_line(tmp_path):
    path = write(tmp_path, "output_dir: out\ntrain:\n  batch_size: 2\noptim:\n  schedule: exponential\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: optim: OptimConfig.schedule='exponential'"):
        load_config(SFTConfig, path)


class _Stop(Exception):
    """Raised by the run's first step after config.yaml is written: the test needs no model or data."""


def _stop(*args, **kwargs):
    raise _Stop


@pytest.mark.parametrize(
    "name, module_name, cls, run, stop_at",
    [
        ("sft", "pipelines.stages.sft", "SFTConfig", "run_sft", "load_model"),
        ("dpo", "pipelines.stages.dpo", "DPORunConfig", "run_dpo", "load_model"),
        # former drift: the reward model wrote config.json through dataclasses.asdict
        ("rm", "reward_models.train", "RMConfig", "run_rm_training", "load_model"),
        ("rlhf", "pipelines.stages.rlhf", "RLHFConfig", "run_rlhf", "load_prompts"),  # after the tokenizer
    ],
)
def test_run_dirs_write_config_yaml_atomically(name, module_name, cls, run, stop_at, tmp_path, monkeypatch):
    import importlib
    import os

    module = importlib.import_module(module_name)
    out = tmp_path / "run"
    path = ROOT / "configs" / name / "tiny_cpu.yaml"
    config = load_config(getattr(module, cls), path, [f"output_dir={out}"])
    if name == "rlhf":
        monkeypatch.setattr(module, "load_model", lambda options: (None, None))
        monkeypatch.setattr(module, "with_tokenizer_ids", lambda config, tokenizer: config)
    monkeypatch.setattr(module, stop_at, _stop)
    renamed, real_replace = [], os.replace

    def replace(src, dst):
        renamed.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Stop):
        getattr(module, run)(config)
    # written whole to a temp file beside it, then renamed over it: a crash never leaves a torn file
    assert [(src.parent, dst) for src, dst in renamed] == [(out, out / "config.yaml")]
    assert (out / "config.yaml").read_text() == dump_yaml(config)
    assert [p.name for p in out.iterdir()] == ["config.yaml"]


def test_the_data_dir_placeholder_is_expanded_in_files_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path / "data"))
    path = write(tmp_path, 'output_dir: out\ndata:\n  path: "${ALIGN_DATA_DIR}/hh/test.jsonl.gz"\n')
    config = load_config(SFTConfig, path)
    assert config.data.path == str(tmp_path / "data" / "hh" / "test.jsonl.gz")
    config = load_config(SFTConfig, path, ["data.path=${ALIGN_DATA_DIR}/other.jsonl"])
    assert config.data.path == str(tmp_path / "data" / "other.jsonl")
    assert "${" not in dump_yaml(config)  # the run's config.yaml names the file it read
    tiny = str(ROOT / "configs" / "quickstart_tiny.yaml")
    quick = load_quickstart(tiny, ["sft.data.path=${ALIGN_DATA_DIR}/s.jsonl"])
    assert quick.sft["data"]["path"] == str(tmp_path / "data" / "s.jsonl")  # a stage-section override
    rl_prompts = tmp_path / "data" / "hh_rlhf" / "helpful-rejection-sampled" / "test.jsonl.gz"
    assert quick.rlhf["data"]["path"] == str(rl_prompts)


def test_shipped_configs_name_data_through_the_data_dir_and_it_holds_every_file():
    placeholder = re.compile(r"\$\{ALIGN_DATA_DIR\}/([^\"',}\s]+)")
    named = 0
    for f in sorted((ROOT / "configs").rglob("*.yaml")):
        text = f.read_text()
        assert "/work/" not in text, f"{f}: a machine-specific absolute path"
        for relative in placeholder.findall(text):
            named += 1
            assert Path(data_path(relative)).exists(), f"{f}: {relative} is not under {data_dir()}"
    assert named >= 20
