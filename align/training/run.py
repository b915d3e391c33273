"""A training run's plumbing: resume-or-start, the jitted steps, the host loop over them.

    run = prepare_run(model, optimizer, loss_fn, run_dir=out, train=TrainOptions(...),
                      mesh=make_run_mesh(...))
    result = fit(run, lambda position: my_batches(position), loop_config, evaluate=...)

`prepare_run` builds the state (sharded), the jitted step, the checkpointer and the metrics writer,
and resumes from the latest checkpoint when there is one (weights, Adam moments, rng, data position,
the open logging window's metric sums; metric lines past that step are dropped so the log reads as one
uninterrupted run).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from align.model.sharding import batch_sharding, place
from align.training.checkpoint import Checkpointer
from align.training.loop import LoopConfig, LoopResult, train_loop
from align.training.lora import add_lora
from align.training.metrics import MetricsWriter, finalize, open_metrics_writer
from align.training.optim import trainable_filter
from align.training.options import TrainOptions
from align.training.state import TrainState, create_train_state, train_state_shardings
from align.training.step import LossFn, make_eval_step, make_train_step

log = logging.getLogger("align.training")


@dataclasses.dataclass
class Run:
    state: TrainState
    step_fn: Callable
    eval_fn: Callable
    checkpointer: Checkpointer
    writer: MetricsWriter
    mesh: Any
    run_dir: Path
    train: TrainOptions
    data_position: Mapping | None = None
    resumed_from: int | None = None
    metrics_window: Mapping | None = None  # the resumed log window's metric sums (train_loop)


def with_lora(model: nnx.Module, train: TrainOptions) -> nnx.Module:
    """`model` with train.lora's adapters (unchanged without)."""
    if train.lora is None:
        return model
    if train.trainable != "lora":
        # Kept, not refused: it is an explicit choice, and runs saved with it must still resume.
        log.warning(
            "train.lora with train.trainable=%r: the base weights train too (full fine-tuning "
            "plus adapters); leave trainable unset or set it to 'lora' to train only the "
            "adapters",
            train.trainable,
        )
    return add_lora(model, train.lora, seed=train.seed)


def prepare_run(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    run_dir: str | Path,
    train: TrainOptions,
    mesh,
    trainable=None,
    manifest: Mapping | None = None,
    learning_rate: optax.Schedule | None = None,
) -> Run:
    """State (sharded over `mesh`), jitted train/eval steps, checkpointer and writer; resumes if possible.

    trainable: an nnx filter; default trainable_filter(train.trainable).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainable = trainable_filter(train.trainable) if trainable is None else trainable
    state = create_train_state(model, optimizer, seed=train.seed, trainable=trainable)
    shardings = train_state_shardings(state, mesh)
    state = place(state, shardings)
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        keep=train.keep_checkpoints,
        async_save=train.async_checkpoints,
        manifest=manifest,
    )
    run = Run(
        state=state,
        step_fn=None,
        eval_fn=None,
        checkpointer=checkpointer,
        writer=open_metrics_writer(run_dir, train.report_to, (manifest or {}).get("config")),
        mesh=mesh,
        run_dir=run_dir,
        train=train,
    )
    restored = checkpointer.restore_latest(state, shardings)
    if restored is not None:
        run.state, run.data_position, run.resumed_from = (
            restored.state,
            restored.manifest["data_position"],
            restored.step,
        )
        # Checkpoints written before the window was saved have none: that row then covers fewer steps.
        run.metrics_window = restored.manifest.get("metrics_window")
        log.info("resuming from step %d (%s)", restored.step, checkpointer.directory)
    run.writer.truncate_after(run.resumed_from or 0)
    run.step_fn = make_train_step(
        loss_fn,
        optimizer,
        grad_accum=train.grad_accum,
        shardings=(shardings, batch_sharding(mesh, 1)),
        learning_rate=learning_rate,
    )
    run.eval_fn = make_eval_step(loss_fn)
    return run


def evaluate(
    eval_fn: Callable, state: TrainState, batches: Iterable[Mapping], limit: int | None = None
) -> dict:
    """Weighted means of the loss's metrics over `batches` (at most `limit` of them)."""
    sums = None
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            break
        out = jax.device_get(eval_fn(state, batch))
        sums = out if sums is None else jax.tree.map(np.add, sums, out)
    if sums is None:
        return {}
    return {k: float(v) for k, v in finalize(sums).items()}


def fit(
    run: Run,
    make_batches: Callable[[Mapping | None], Iterator],
    loop: LoopConfig,
    evaluate_fn: Callable[[TrainState], Mapping] | None = None,
    on_step: Callable[[int, TrainState], None] | None = None,
) -> LoopResult:
    """train_loop from the run's (possibly resumed) state and data position."""
    try:
        result = train_loop(
            run.step_fn,
            run.state,
            make_batches(run.data_position),
            loop,
            checkpointer=run.checkpointer,
            evaluate=evaluate_fn,
            writer=run.writer,
            data_position=run.data_position,
            on_step=on_step,
            metrics_window=run.metrics_window,
        )
    finally:
        run.writer.close()
    run.state, run.data_position = result.state, result.data_position
    return result
