"""A checkpoint the storage refuses (disk full): one line naming the step, its directory and the OS
error, exit code 1, the last complete checkpoint intact, and a rerun that resumes from it."""

import errno
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import optax
import pytest
from etils import epath

from align.training import Checkpointer, CheckpointWriteFailed, abstract_train_state
from align.training.write_failures import storage_error
from tests.paths import CONFIGS
from tests.training.test_checkpoint import assert_same, make_model, state_at
from tests.xla import FAST_COMPILE

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
RESUME_HINT = "fix the cause (e.g. free disk space) and run the same command again to resume from it"


def test_storage_error_names_the_os_error_of_an_oserror_or_a_tensorstore_error():
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/manifest")
    assert storage_error(enospc) == "[Errno 28] No space left on device"
    # TensorStore raises ValueErrors that quote the OS error code
    ts = ValueError("RESOURCE_EXHAUSTED: Error writing \"a/0\": Failed to write 9 bytes [os_error_code='28']")
    assert storage_error(ts) == "[Errno 28] No space left on device"
    try:
        raise RuntimeError("save failed") from OSError(errno.EDQUOT, "quota")
    except RuntimeError as e:
        assert storage_error(e) == f"[Errno {errno.EDQUOT}] {os.strerror(errno.EDQUOT)}"
    assert storage_error(ValueError("Requested more bytes than we reserved")) is None  # a bug
    assert storage_error(None) is None


def fail_writes_under(monkeypatch, part: str) -> None:
    """epath writes (Orbax's JSON manifest and metadata) to a path containing `part` fail as on a full
    disk."""
    cls = type(epath.Path("/"))
    write_text = cls.write_text

    def full(self, data, *args, **kwargs):
        if part in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(cls, "write_text", full)


def test_a_refused_write_raises_one_line_and_keeps_the_last_complete_checkpoint(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)  # a relative run directory: the message names it as given
    caplog.set_level(logging.INFO)
    ck = Checkpointer(Path("run") / "checkpoints")
    assert ck.save(state_at(1))
    ck.wait()
    with monkeypatch.context() as m:
        fail_writes_under(m, "2.orbax-checkpoint-tmp")
        with pytest.raises(CheckpointWriteFailed) as e:
            ck.save(state_at(2))
            ck.wait()
    assert str(e.value) == (
        "could not write checkpoint step 2 to run/checkpoints/2: [Errno 28] No space left on device; "
        f"the last complete checkpoint, step 1, is intact: {RESUME_HINT}"
    )
    assert e.value.exit_code == 1
    assert sorted(os.listdir("run/checkpoints")) == ["1"]  # the partial step 2 is removed
    ck.close()  # closed already: no second report
    # Orbax's own reports of the failure (with tracebacks) are DEBUG records, not printed at INFO
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

    with Checkpointer(Path("run") / "checkpoints") as again:
        restored = again.restore_latest(abstract_train_state(make_model, optax.adam(1e-3)))
        assert restored.step == 1
        assert_same(restored.state, state_at(1))
        assert again.save(state_at(2))  # space freed: the same step saves
        again.wait()
        assert again.all_steps() == [1, 2]


def test_no_earlier_checkpoint_says_so(tmp_path, monkeypatch):
    fail_writes_under(monkeypatch, "orbax-checkpoint-tmp")
    ck = Checkpointer(tmp_path / "ck")
    with pytest.raises(CheckpointWriteFailed, match="there is no earlier checkpoint: fix the cause"):
        ck.save(state_at(3))
        ck.wait()
    assert os.listdir(tmp_path / "ck") == []


# A run of the align command: its own INFO lines ("2026-01-01 10:00:00,000 align.sft: ...")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} align\.[\w.]+: ")
TINY = [
    "--config",
    str(CONFIGS / "sft" / "tiny_cpu.yaml"),
    "data.limit=24",
    "optim.total_steps=4",
    "optim.warmup_steps=1",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.progress=false",
    "export=false",
]


def align(tmp_path, *argv):
    # the CLI's own XLA defaults, on the suite's compile flags (no fake devices)
    env = {**os.environ, "XLA_FLAGS": FAST_COMPILE}
    env.update(PYTHONPATH=str(ROOT), JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"))
    return subprocess.run(
        [sys.executable, *argv], check=False, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_a_disk_full_during_training_is_one_line_exit_1_and_the_rerun_resumes(tmp_path):
    run = tmp_path / "run"
    args = ["sft", *TINY, f"output_dir={run}"]
    failed = align(tmp_path, str(HERE / "write_failure_job.py"), *args)
    assert failed.returncode == 1, failed.stderr[-3000:]
    # nothing but the run's own log lines and the one error line: no Orbax, asyncio or TensorStore
    # report ("Traceback", "Event loop is closed", "Task exception was never retrieved")
    assert [line for line in failed.stderr.splitlines() if not LOG_LINE.match(line)] == [
        f"align sft: could not write checkpoint step 4 to {run}/checkpoints/4: [Errno 27] File too large; "
        f"the last complete checkpoint, step 2, is intact: {RESUME_HINT}"
    ], failed.stderr[-3000:]
    assert sorted(os.listdir(run / "checkpoints")) == ["2"]
    assert not (run / "summary.json").exists()

    rerun = align(tmp_path, "-m", "pipelines.cli", *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["step"] == 4
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]
