"""Every shipped RLHF / DPO / quickstart config loads, and the quickstart's stage configs build."""

from pathlib import Path

import pytest

from pipelines.config_io import ConfigError, load_config
from pipelines.dpo import DPORunConfig
from pipelines.quickstart import Pipeline, QuickstartConfig, load_quickstart
from pipelines.rlhf import RLHFConfig


@pytest.mark.parametrize("path", sorted(Path("configs/rlhf").glob("*.yaml")), ids=str)
def test_rlhf_configs_load(path):
    config = load_config(RLHFConfig, path)
    assert config.reward.models or config.reward.rules
    assert config.train.batch_size % (config.ppo.minibatch_size if config.algorithm == "ppo" else 1) == 0


@pytest.mark.parametrize("path", sorted(Path("configs/dpo").glob("*.yaml")), ids=str)
def test_dpo_configs_load(path):
    assert load_config(DPORunConfig, path).dpo.beta > 0


@pytest.mark.parametrize("path", sorted(Path("configs").glob("quickstart*.yaml")), ids=str)
def test_quickstart_configs_build_every_stage_config(path, tmp_path):
    pipeline = Pipeline(load_config(QuickstartConfig, path, [f"output_dir={tmp_path}"]), path)
    pipeline.check()  # every stage's config, one RL config per variant when rl_per_variant is set
    assert pipeline.sft_config().output_dir == str(tmp_path / "sft")
    for rm in pipeline.config.reward_models:
        assert pipeline.rm_config(rm).model.spec == str(tmp_path / "sft" / "export")
    rl = pipeline.rlhf_config()
    assert rl.reward.models and rl.model.spec == str(tmp_path / "sft" / "export")
    assert [v.name for v in pipeline.variants] == ["chat", "developer"]


def test_stage_overrides_reach_the_stage_and_typos_name_the_stage_and_the_key(tmp_path):
    path = "configs/quickstart_tiny.yaml"
    config = load_quickstart(
        path, [f"output_dir={tmp_path}", "rlhf.train.iterations=2", "sft.optim.total_steps=3"]
    )
    pipeline = Pipeline(config, path)
    assert pipeline.rlhf_config().train.iterations == 2 and pipeline.sft_config().optim.total_steps == 3
    assert pipeline.rlhf_config().train.batch_size == 8  # the rest of the section is kept
    typo = load_quickstart(path, [f"output_dir={tmp_path}", "rlhf.trian.iterations=2"])
    with pytest.raises(ConfigError, match=r"rlhf.*unknown key 'trian'.*did you mean 'train'"):
        Pipeline(typo, path).check()
