"""`align dpo` on the tiny config: ln 2 before training, resumable steps, the same numbers either way."""

import json
import math

import pytest

from align.config_io import load_config
from pipelines.stages.dpo import DPORunConfig, run_dpo
from tests.paths import CONFIGS
from tests.paths import DATA as SHARED

CONFIG = CONFIGS / "dpo" / "tiny_cpu.yaml"
DATA = SHARED / "hh_rlhf/helpful-base/test.jsonl.gz"


def _config(out, *overrides):
    return load_config(
        DPORunConfig,
        CONFIG,
        [
            f"output_dir={out}",
            "optim.total_steps=4",
            "train.progress=false",
            "train.checkpoint_every=2",
            "train.log_every=1",
            "mesh.devices=1",
            *overrides,
        ],
    )


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} (shared benchmark data) is not on this machine")
def test_dpo_pipeline_precomputed_equals_on_the_fly_and_resumes(tmp_path):
    summary = run_dpo(_config(tmp_path / "pre"))
    assert summary["eval_before"]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert summary["eval_before"]["accuracy"] == 0.0
    assert (tmp_path / "pre" / "export" / "model.safetensors").exists()
    # on-the-fly reference, stopped after 2 steps, then resumed: the same losses as the precomputed run
    run_dpo(_config(tmp_path / "fly", "precompute_reference=false", "optim.total_steps=2", "export=false"))
    (tmp_path / "fly" / "summary.json").unlink()
    resumed = run_dpo(_config(tmp_path / "fly", "precompute_reference=false", "export=false"))
    assert resumed["resumed_from"] == 2

    def losses(d):
        return [
            row["loss"]
            for row in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
            if "loss" in row
        ]

    assert losses(tmp_path / "fly") == pytest.approx(losses(tmp_path / "pre"), abs=1e-6)
    assert run_dpo(_config(tmp_path / "pre")) == summary  # finished: not redone


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} (shared benchmark data) is not on this machine")
def test_dpo_honours_eval_before_false_and_evaluates_the_final_model(tmp_path):
    """Former drift: DPO wrote eval_before.json whatever train.eval_before said, and its eval_after was
    None unless the loop had logged one; both now come from the shared stage body."""
    summary = run_dpo(
        _config(tmp_path / "run", "train.eval_before=false", "optim.total_steps=2", "export=false")
    )
    assert not (tmp_path / "run" / "eval_before.json").exists() and summary["eval_before"] is None
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if "eval/loss" in r and r["step"] == 2][-1]
    assert summary["eval_after"]["loss"] == pytest.approx(final["eval/loss"])
