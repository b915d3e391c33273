"""Host loop: logging cadence and writers, eval/checkpoint hooks, SIGTERM, non-finite stop."""

import itertools
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from align.data import DataOrder, Tokenized, batches, pad_batch
from align.model import Decoder, ModelConfig
from align.training import (
    Checkpointer,
    LoopConfig,
    MetricsWriter,
    NonFiniteLoss,
    create_train_state,
    make_train_step,
    read_metrics,
    train_loop,
)
from pipelines.stages.sft import sft_loss

V, T, ROWS = 64, 12, 4
CONFIG = ModelConfig.tiny(V).replace(num_layers=1, layer_types=("global",))


def poisonable_loss(model, batch, rng):
    """The SFT loss, times NaN on batches marked poison."""
    loss, metrics = sft_loss(chunk_size=16)(model, batch, rng)
    return jnp.where(batch["poison"].any(), jnp.nan, loss), metrics


def data(poison_step=None):
    rs = np.random.default_rng(0)
    docs = [Tokenized(rs.integers(3, V, n).astype(np.int32), np.ones(n, bool)) for n in rs.integers(4, T, 40)]
    order = DataOrder(len(docs), seed=0)
    for i, (batch, pos) in enumerate(
        batches(docs, order, None, ROWS, lambda b: pad_batch(b, T, rows=ROWS)), 1
    ):
        yield {**batch, "poison": np.full((ROWS,), i == poison_step)}, pos


@pytest.fixture(scope="module")
def step_fn():
    return make_train_step(poisonable_loss, optax.adam(1e-2))


_INITIAL = []


def fresh_state():
    """The same initial state for every test, as host arrays (the step donates its device input)."""
    if not _INITIAL:
        state = create_train_state(Decoder(CONFIG, rngs=nnx.Rngs(0)), optax.adam(1e-2))
        _INITIAL.append(jax.tree.map(np.asarray, state))
    return _INITIAL[0]


def test_logs_evaluates_and_checkpoints_on_schedule(tmp_path, step_fn):
    evals = []

    def evaluate(state):
        evals.append(int(state.step))
        return {"loss": 1.5}

    writer = MetricsWriter(tmp_path / "metrics.jsonl", tmp_path / "tb")
    with Checkpointer(tmp_path / "ck", keep=5) as ck:
        result = train_loop(
            step_fn,
            fresh_state(),
            data(),
            LoopConfig(total_steps=7, log_every=3, eval_every=4, checkpoint_every=3, progress=True),
            checkpointer=ck,
            evaluate=evaluate,
            writer=writer,
        )
        assert ck.all_steps() == [3, 6, 7]
        assert ck.read_manifest(6)["data_position"] == {"epoch": 0, "index": 24, "n": 40, "seed": 0}
    writer.close()
    assert result.stopped == "done" and result.step == 7 and int(result.state.step) == 7
    assert evals == [4, 7]
    rows = read_metrics(tmp_path / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [3, 6, 7]
    assert [r["step"] for r in rows if "eval/loss" in r] == [4, 7]
    assert all(
        r["tokens_per_s"] > 0 and r["n_tokens"] > 0 and np.isfinite(r["grad_norm"]) for r in train_rows
    )
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, step_fn):
    seen = {}

    def remember(step, state):
        seen[step] = jax.tree.map(np.asarray, state.params)

    with Checkpointer(tmp_path / "ck") as ck:
        with pytest.raises(NonFiniteLoss, match=r"step 6.*last good checkpoint is step 4"):
            train_loop(
                step_fn,
                fresh_state(),
                data(poison_step=6),
                LoopConfig(total_steps=10, checkpoint_every=2, progress=False),
                checkpointer=ck,
                on_step=remember,
            )
        assert ck.latest_step() == 4
        restored = ck.restore_latest(fresh_state()).state
    for a, b in zip(jax.tree.leaves(seen[4]), jax.tree.leaves(restored.params)):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_sigterm_saves_and_stops(tmp_path, step_fn):
    def preempt(step, state):
        if step == 3:
            # the loop's own handler is installed while it runs (not the one in place before it)
            assert signal.getsignal(signal.SIGTERM) is not before
            os.kill(os.getpid(), signal.SIGTERM)

    def before(signum, frame):  # a caller's handler: the loop must hand SIGTERM back to it
        raise AssertionError("the caller's SIGTERM handler ran during the loop")

    previous = signal.signal(signal.SIGTERM, before)
    try:
        with Checkpointer(tmp_path / "ck") as ck:
            result = train_loop(
                step_fn,
                fresh_state(),
                data(),
                LoopConfig(total_steps=10, progress=False),
                checkpointer=ck,
                on_step=preempt,
            )
            assert result.stopped == "sigterm" and result.step == 3
            assert ck.all_steps() == [3]
            assert ck.read_manifest()["data_position"]["index"] == 12
        assert signal.getsignal(signal.SIGTERM) is before  # restored, not leaked
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_data_exhaustion_is_reported(tmp_path, step_fn):
    short = itertools.islice(data(), 2)
    result = train_loop(step_fn, fresh_state(), short, LoopConfig(total_steps=5, progress=False))
    assert result.stopped == "data_exhausted" and result.step == 2


def test_resume_between_log_steps_writes_the_rows_of_an_uninterrupted_run(tmp_path):
    """log_every=3, stopped after step 4: the step-6 row still averages steps 4-6 (the window's sums
    are saved with the checkpoint), so metrics.jsonl equals the straight run's."""
    from align.training import OptimConfig, make_optimizer
    from align.training.options import MeshOptions, TrainOptions, make_run_mesh
    from align.training.run import fit, prepare_run

    rs = np.random.default_rng(0)
    docs = [Tokenized(rs.integers(3, V, n).astype(np.int32), np.ones(n, bool)) for n in rs.integers(4, T, 40)]
    order = DataOrder(len(docs), seed=0)

    def job(run_dir, stop_at=0):
        train = TrainOptions(batch_size=ROWS, log_every=3, progress=False, async_checkpoints=False)
        run = prepare_run(
            Decoder(CONFIG, rngs=nnx.Rngs(0)),
            make_optimizer(OptimConfig(total_steps=7)),
            sft_loss(chunk_size=16),
            run_dir=run_dir,
            train=train,
            mesh=make_run_mesh(MeshOptions(devices=1)),
        )

        def on_step(step, state):
            if step == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)

        ran = []
        fit(
            run,
            lambda pos: batches(docs, order, pos, ROWS, lambda b: pad_batch(b, T, rows=ROWS)),
            LoopConfig(total_steps=7, log_every=3, progress=False),
            on_step=lambda step, state: (ran.append(step), on_step(step, state)),
        )
        run.checkpointer.close()
        return run, ran, read_metrics(run_dir / "metrics.jsonl")

    first, ran, rows = job(tmp_path / "resumed", stop_at=4)
    assert first.resumed_from is None and ran == [1, 2, 3, 4] and [r["step"] for r in rows] == [3]
    second, ran, resumed = job(tmp_path / "resumed")
    # a real resume: from the SIGTERM checkpoint at step 4, running only steps 5-7, with step 4's open
    # window (one step's weighted sums: loss * n_tokens, n_tokens, weight) restored from the manifest
    assert second.resumed_from == 4 and ran == [5, 6, 7]
    step4 = list(itertools.islice(batches(docs, order, None, ROWS, lambda b: pad_batch(b, T, rows=ROWS)), 4))
    supervised = float(step4[-1][0]["loss_mask"].sum())
    window = second.metrics_window
    assert window["n_tokens"] == window["weight"] == supervised > 0
    assert 0 < window["loss"] / window["weight"] < 2 * np.log(V)  # a mean token NLL, times the weight
    _, _, straight = job(tmp_path / "straight")
    assert [r["step"] for r in resumed] == [r["step"] for r in straight] == [3, 6, 7]
    for a, b in zip(resumed, straight):
        assert a["n_tokens"] == b["n_tokens"]
        for k in set(b) - {"tokens_per_s", "seconds"}:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k)
