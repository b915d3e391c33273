"""`align distill` on the tiny config: a SIGKILLed run resumes to the same weights and metrics as an
uninterrupted one (on-policy steps included); the student learns; bad configs are one-line input errors."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from align.config_io import load_config
from align.errors import InvalidInput
from pipelines.stages.distill import DistillConfig
from tests.paths import CONFIGS, ROOT
from tests.paths import DATA as SHARED

HERE = Path(__file__).parent
DATA = SHARED / "hh_rlhf/helpful-base/test.jsonl.gz"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} (shared benchmark data) is not here")
# 8 steps of 2 rows, half of them on-policy, a checkpoint every 2 steps.
SMALL = [
    "optim.total_steps=8",
    "train.batch_size=2",
    "train.checkpoint_every=2",
    "train.keep_checkpoints=3",
    "train.log_every=1",
    "train.progress=false",
    "data.limit=32",
    "data.max_length=64",
    "distill.max_new_tokens=8",
    "distill.chunk_size=32",
    "distill.vocab_chunk=100",
    "mesh.devices=1",
]


def launch(tmp_path, run_dir, kill_at):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache")}
    return subprocess.run(
        [sys.executable, str(HERE / "distill_resume_job.py"), str(run_dir), str(kill_at), *SMALL],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@needs_data
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    killed = launch(tmp_path, tmp_path / "killed", 5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = launch(tmp_path, tmp_path / "killed", 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["resumed_from"] in (2, 4) and report["step"] == 8
    straight = launch(tmp_path, tmp_path / "straight", 0)
    assert straight.returncode == 0, straight.stderr[-2000:]
    reference = json.loads(straight.stdout.strip().splitlines()[-1])
    assert reference["resumed_from"] is None
    assert 0 < reference["on_policy_steps"] < 8  # both kinds of step ran (GKD lambda 0.5)
    assert report["on_policy_steps"] == reference["on_policy_steps"]
    assert report["eval_after"] == reference["eval_after"]
    after = load_file(tmp_path / "killed" / "export" / "model.safetensors")
    want = load_file(tmp_path / "straight" / "export" / "model.safetensors")
    assert sorted(after) == sorted(want) and len(want) > 5
    for key in want:
        np.testing.assert_array_equal(after[key], want[key])
    train = [r for r in _rows(tmp_path / "killed") if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["loss"] for r in train] == [r["loss"] for r in _rows(tmp_path / "straight") if "loss" in r]
    # the student learned: held-out divergence to the teacher went down
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["eval_after"]["loss"] < summary["eval_before"]["loss"]
    # half the teacher's depth, read back from the export
    config = json.loads((tmp_path / "straight" / "export" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("distill.beta=1.5", "beta"),
        ("distill.on_policy=2", "on_policy"),
        ("student.init=nope", "student.init"),
        ("distill.topk=8", "on-policy"),  # tiny_cpu.yaml trains half its steps on-policy
    ],
)
def test_bad_distill_options_are_input_errors(tmp_path, override, message):
    with pytest.raises(InvalidInput, match=message):
        load_config(
            DistillConfig, CONFIGS / "distill" / "tiny_cpu.yaml", [f"output_dir={tmp_path}", override]
        )


@needs_data
def test_stored_top_k_of_the_whole_vocabulary_trains_as_the_dense_forward_kl(tmp_path):
    """Sparse targets (distill.topk) with k = V are the dense forward KL: the same losses step by step,
    with the teacher run once over the data instead of in every step."""
    from pipelines.stages.distill import run_distill

    def config(name, *extra):
        base = [o for o in SMALL if not o.startswith(("distill.vocab_chunk", "train.checkpoint_every"))]
        overrides = [f"output_dir={tmp_path / name}", *base, "optim.total_steps=4", "distill.beta=0",
                     "distill.on_policy=0", "export=false", *extra]  # fmt: skip
        return load_config(DistillConfig, CONFIGS / "distill" / "tiny_cpu.yaml", overrides)

    dense = run_distill(config("dense"))
    sparse = run_distill(config("sparse", "distill.topk=272"))  # the tiny vocabulary
    assert sparse["eval_before"]["loss"] == pytest.approx(dense["eval_before"]["loss"], rel=1e-4)
    assert sparse["eval_after"]["loss"] == pytest.approx(dense["eval_after"]["loss"], rel=1e-4)
    d = [r["loss"] for r in _rows(tmp_path / "dense") if "loss" in r]
    s = [r["loss"] for r in _rows(tmp_path / "sparse") if "loss" in r]
    assert len(d) == 4 and s == pytest.approx(d, rel=1e-4)
    assert sparse["eval_after"]["loss"] < sparse["eval_before"]["loss"]
