"""Every shipped RLHF / DPO / quickstart config loads, and the quickstart's stage configs build."""

import json
import re
import logging
from pathlib import Path

import pytest

from align.config_io import ConfigError, load_config
from pipelines.stages.dpo import DPORunConfig
from pipelines.pipeline import Pipeline, QuickstartConfig, load_quickstart
from pipelines.stages.rlhf import RLHFConfig
from tests.paths import VARIANTS

ROOT = Path(__file__).resolve().parents[2]  # globbed from the repository, whatever pytest's cwd
RLHF = sorted((ROOT / "configs" / "rlhf").glob("*.yaml"))
DPO = sorted((ROOT / "configs" / "dpo").glob("*.yaml"))
# every pipeline config: the quickstarts and the full-strength recipe
QUICKSTART = sorted((ROOT / "configs").glob("quickstart*.yaml")) + [ROOT / "configs" / "factuality.yaml"]
TINY = str(ROOT / "configs" / "quickstart_tiny.yaml")


def _id(path):
    return str(path.relative_to(ROOT)) if isinstance(path, Path) else str(path)


def test_the_shipped_configs_are_found():
    # an empty glob would turn the parametrized tests below into one silent skip
    assert len(RLHF) >= 2 and len(DPO) >= 2 and len(QUICKSTART) >= 4, (RLHF, DPO, QUICKSTART)
    assert ROOT / "configs" / "rlhf" / "tiny_cpu.yaml" in RLHF and Path(TINY) in QUICKSTART


@pytest.mark.parametrize("path", RLHF, ids=_id)
def test_rlhf_configs_load(path):
    config = load_config(RLHFConfig, path)
    assert config.reward.models or config.reward.rules
    assert config.train.batch_size % (config.ppo.minibatch_size if config.algorithm == "ppo" else 1) == 0


@pytest.mark.parametrize("path", DPO, ids=_id)
def test_dpo_configs_load(path):
    assert load_config(DPORunConfig, path).dpo.beta > 0


@pytest.mark.parametrize("path", QUICKSTART, ids=_id)
def test_quickstart_configs_build_every_stage_config(path, tmp_path, caplog):
    pipeline = Pipeline(load_config(QuickstartConfig, path, [f"output_dir={tmp_path}", VARIANTS]), path)
    with caplog.at_level(logging.WARNING, logger="align.pipeline"):
        pipeline.check()  # every stage's config, one RL config per variant when rl_per_variant is set
    assert not caplog.records, caplog.text
    assert pipeline.sft_config().output_dir == str(tmp_path / "sft")
    for rm in pipeline.config.reward_models:
        assert pipeline.rm_config(rm).model.spec == str(tmp_path / "sft" / "export")
    rl = pipeline.rlhf_config()
    assert rl.reward.models and rl.model.spec == str(tmp_path / "sft" / "export")
    assert [v.name for v in pipeline.variants] == ["chat", "developer"]


def test_stage_overrides_reach_the_stage_and_typos_name_the_stage_and_the_key(tmp_path):
    path = TINY
    config = load_quickstart(
        path, [f"output_dir={tmp_path}", "rlhf.train.iterations=2", "sft.optim.total_steps=3", VARIANTS]
    )
    pipeline = Pipeline(config, path)
    assert pipeline.rlhf_config().train.iterations == 2 and pipeline.sft_config().optim.total_steps == 3
    assert pipeline.rlhf_config().train.batch_size == 8  # the rest of the section is kept
    typo = load_quickstart(path, [f"output_dir={tmp_path}", "rlhf.trian.iterations=2", VARIANTS])
    with pytest.raises(ConfigError, match=r"rlhf.*unknown key 'trian'.*did you mean 'train'"):
        Pipeline(typo, path).check()


@pytest.mark.parametrize("path", QUICKSTART, ids=_id)
def test_no_reward_model_holds_out_a_pair_sft_trained_on(path, tmp_path):
    from align.data import load_records
    from align.data.splits import heldout_split

    pipeline = Pipeline(load_config(QuickstartConfig, path, [f"output_dir={tmp_path}", VARIANTS]), path)
    sft = pipeline.sft_config().data
    if sft.sources:  # a mixture: no reward model may read any of its files (their cuts differ)
        files = {Path(s.path).resolve() for s in sft.sources}
        for rm in pipeline.config.reward_models:
            data = pipeline.rm_config(rm).data
            for rm_path in [data.path] + [m.path for m in data.more]:
                assert Path(rm_path).resolve() not in files, (rm.name, rm_path)
        return
    if not Path(sft.path).exists():
        pytest.skip(f"{sft.path} (shared benchmark data) is not on this machine")

    def cut(data):
        rows = load_records(data.path, data.split, limit=data.limit, skip_invalid=data.skip_invalid)
        train, held = heldout_split(list(rows), data.heldout)
        key = lambda r: json.dumps([r.prompt, r.chosen])  # noqa: E731 - conversations are lists
        return {key(r) for r in train}, {key(r) for r in held}

    sft_train, _ = cut(sft)
    for rm in pipeline.config.reward_models:
        _, rm_held = cut(pipeline.rm_config(rm).data)
        assert rm_held and not rm_held & sft_train, rm.name


def test_a_reward_model_cut_apart_from_sft_on_the_same_file_is_warned_about(tmp_path, caplog):
    path = TINY
    config = load_quickstart(path, [f"output_dir={tmp_path}", "sft.data.heldout.seed=5", VARIANTS])
    with caplog.at_level(logging.WARNING, logger="align.pipeline"):
        Pipeline(config, path).check()
    assert "reward_models.helpfulness reads the SFT data file" in caplog.text


def test_a_variants_file_missing_from_the_working_directory_says_where_it_looked(tmp_path, monkeypatch):
    from align.errors import MissingInput

    path = str(ROOT / "configs" / "quickstart.yaml")
    config = load_config(QuickstartConfig, path, [f"output_dir={tmp_path / 'run'}"])
    monkeypatch.chdir(tmp_path)  # the shipped config names configs/variants/... relative to the repo root
    where = r"quickstart\.yaml: variants: .*working directory, " + re.escape(str(tmp_path))
    with pytest.raises(MissingInput, match=where):
        Pipeline(config, path)
