"""Exact resume: a run SIGKILLed after step k and restarted ends bit-for-bit where an uninterrupted
run does."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def launch(tmp_path, run_dir, total, kill_at, out=""):
    # The three processes compile the same step: share a persistent compilation cache between them.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache")}
    return subprocess.run(
        [sys.executable, str(HERE / "resume_job.py"), str(run_dir), str(total), str(kill_at), str(out)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def report(proc) -> dict:
    """resume_job.py's last stdout line: {"resumed_from": step or None, "steps": [steps it ran]}."""
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    total = 8
    killed = launch(tmp_path, tmp_path / "killed", total, 5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    saved = sorted(int(p.name) for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) <= 4  # died after step 5: nothing past the step-4 save

    resumed = launch(tmp_path, tmp_path / "killed", total, 0, tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # really a resume, not a deterministic rerun from step 0: it restored the newest complete checkpoint
    # (step 4, or 2 if the async step-4 save was cut short) and ran only the steps after it
    k = report(resumed)["resumed_from"]
    assert k == max(saved) and k in (2, 4)
    assert report(resumed)["steps"] == list(range(k + 1, total + 1))
    straight = launch(tmp_path, tmp_path / "straight", total, 0, tmp_path / "straight.npz")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert report(straight) == {"resumed_from": None, "steps": list(range(1, total + 1))}

    after, reference = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "straight.npz")
    assert sorted(after.files) == sorted(reference.files) and len(reference.files) > 10
    for key in reference.files:
        np.testing.assert_array_equal(after[key], reference[key])

    # the metrics log reads as one run: every step once, in order, and equal to the straight run's
    def log(name):
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert [r["step"] for r in log("killed")] == list(range(1, total + 1))
    assert [r["loss"] for r in log("killed")] == [r["loss"] for r in log("straight")]
