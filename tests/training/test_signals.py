"""SIGTERM in every wait: a data pipeline that never yields, and the loading before the loop, stop
promptly with the resume message (a busy wait that SIGTERM must interrupt; never a sleep to time)."""

from __future__ import annotations

import os
import signal
import threading
import time

import optax
import pytest

from align.training import Checkpointer, LoopConfig, make_train_step, train_loop
from align.training.loop import Preempted, sigterm_stops
from pipelines.cli import main
from tests.training.test_loop import data, fresh_state, poisonable_loss

GIVE_UP_S = 60.0  # only reached when SIGTERM failed to interrupt: the test then fails, not hangs


def _kill_when(event: threading.Event) -> threading.Thread:
    """SIGTERM to this process once `event` is set (the main thread is then inside the wait)."""

    def run():
        if event.wait(GIVE_UP_S):
            os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait_forever(started: threading.Event) -> None:
    """What `train.batch_size: -4` used to do to the batcher: spin without ever yielding. The
    `except Exception` stands for data code that catches broadly: it must not swallow the stop."""
    started.set()
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        try:
            sum(range(100))
        except Exception:  # noqa: BLE001
            pass
    raise AssertionError("SIGTERM did not interrupt the wait")


def test_sigterm_while_waiting_for_a_batch_stops_and_checkpoints(tmp_path):
    started = threading.Event()

    def stuck():
        it = data()
        yield next(it)
        yield next(it)
        _wait_forever(started)

    _kill_when(started)
    with Checkpointer(tmp_path / "ck") as ck:
        result = train_loop(
            make_train_step(poisonable_loss, optax.adam(1e-2)),
            fresh_state(),
            stuck(),
            LoopConfig(total_steps=10, progress=False),
            checkpointer=ck,
        )
        assert result.stopped == "sigterm" and result.step == 2
        assert ck.all_steps() == [2]
        assert ck.read_manifest()["data_position"]["index"] == 8  # resumes after the 2 x 4 rows it trained on


def test_sigterm_while_loading_raises_preempted_with_the_resume_message():
    started = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    _kill_when(started)
    with pytest.raises(Preempted) as e:
        with sigterm_stops("tokenising the data"):
            _wait_forever(started)
    assert e.value.exit_code == 143
    assert str(e.value) == (
        "stopped by SIGTERM while tokenising the data, before the next training step; nothing was lost: "
        "run the same command again to resume (from the latest checkpoint, if there is one)"
    )
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stage_command_stops_on_sigterm_during_data_loading(tmp_path, monkeypatch, capsys):
    started = threading.Event()
    monkeypatch.setattr("pipelines.stages.sft.run_sft", lambda config: _wait_forever(started))
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\n")
    _kill_when(started)
    assert main(["sft", "--config", str(config)]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "align sft: stopped by SIGTERM while loading the model and the data, before the next training "
        "step; nothing was lost: run the same command again to resume (from the latest checkpoint, if "
        "there is one)"
    ]
