"""The pipeline's optional `distill:` stage on the tiny quickstart: chat, developer and nano in one run,
nano a half-depth student of chat, evaluated and exported with its card like the other two."""

import dataclasses
import io
import json

import pytest

from align.config_io import load_config
from align.errors import InvalidInput
from pipelines.pipeline import Pipeline, QuickstartConfig, run_pipeline
from safety_evals.review.documents import load_results
from tests.paths import CONFIGS, VARIANTS
from tests.paths import DATA as SHARED

CONFIG = str(CONFIGS / "quickstart_tiny.yaml")
DATA = SHARED / "hh_rlhf/helpful-base/test.jsonl.gz"
DISTILL = {
    "teacher_variant": "chat",
    "student": {"init": "teacher", "keep": "every_other"},
    "data": {"path": str(DATA), "limit": 32, "max_length": 96,
             "truncation": "keep_end", "heldout": {"heldout_fraction": 0.25, "seed": 0}},
    "distill": {"beta": 0.0, "on_policy": 0.5, "max_new_tokens": 8, "chunk_size": 128},
    "optim": {"learning_rate": 3.0e-3, "warmup_steps": 1, "total_steps": 4, "schedule": "cosine"},
    "train": {"batch_size": 4, "log_every": 2, "progress": False},
    "mesh": {"devices": 1},
}  # fmt: skip


def _config(out, **distill):
    config = load_config(QuickstartConfig, CONFIG, [f"output_dir={out}", VARIANTS])
    return dataclasses.replace(config, distill={**DISTILL, **distill})


def test_pipeline_produces_chat_developer_and_nano(tmp_path):
    if not DATA.exists():
        pytest.skip(f"{DATA} (shared benchmark data) is not on this machine")
    config = _config(tmp_path)
    report = run_pipeline(config, CONFIG, stream=io.StringIO())
    stages = [s.name for s in Pipeline(config, CONFIG).stages()]
    assert (
        stages.index("rl")
        < stages.index("distill")
        < stages.index("eval:nano")
        < stages.index("variant:nano")
    )
    assert stages[-1] == "variant:nano" and "rl:nano" not in stages
    assert all(report[s]["status"] == "ran" for s in stages)
    for variant in ("chat", "developer", "nano"):
        assert load_results(tmp_path / "evals" / f"{variant}.json").model.variant == variant
        card = (tmp_path / "variants" / variant / "README.md").read_text()
        assert f"variant-{variant}" in card and "| crows_pairs | pct_stereotype |" in card
    # nano: half the teacher's depth, distilled from the chat policy
    nano = json.loads((tmp_path / "variants" / "nano" / "config.json").read_text())
    chat = json.loads((tmp_path / "variants" / "chat" / "config.json").read_text())
    assert nano["num_hidden_layers"] * 2 == chat["num_hidden_layers"]
    card = (tmp_path / "variants" / "nano" / "README.md").read_text()
    assert "| distill |" in card and "forward KL to chat" in card
    summary = json.loads((tmp_path / "distill" / "summary.json").read_text())
    assert summary["step"] == 4 and summary["eval_after"]["loss"] < summary["eval_before"]["loss"]


def test_without_a_distill_section_there_is_no_nano_stage(tmp_path):
    config = load_config(QuickstartConfig, CONFIG, [f"output_dir={tmp_path}", VARIANTS])
    assert not [s.name for s in Pipeline(config, CONFIG).stages() if "nano" in s.name or s.name == "distill"]


def test_an_unknown_teacher_variant_fails_before_any_stage_runs(tmp_path):
    with pytest.raises(InvalidInput, match="teacher_variant 'large'"):
        Pipeline(_config(tmp_path, teacher_variant="large"), CONFIG)
