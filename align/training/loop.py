"""The host loop: batches -> step -> log -> eval hook -> checkpoint hook. No algorithm logic.

`batches` yields (batch, data position after it) -- align.data.batches / packed_batches do -- so every
checkpoint records where the data stream is and a resumed run sees exactly the batches that follow.
It also records the metric sums of the logging window in progress ("metrics_window"), so a run resumed
between two log steps writes the same rows as an uninterrupted one.

Stops:
  * total_steps reached: final eval and checkpoint, `stopped="done"`;
  * SIGTERM (preemption): the step in flight finishes, then a checkpoint, `stopped="sigterm"`. A
    SIGTERM while the loop waits for the next batch (a data pipeline can take any time: tokenising,
    reading, or never yielding at all) interrupts the wait at once, and the run stops the same way;
    before the loop, `sigterm_stops` turns it into `Preempted` (nothing to save yet);
  * data exhausted: final checkpoint, `stopped="data_exhausted"`;
  * a non-finite loss or gradient: raises NonFiniteLoss. The step left the weights unchanged and the
    bad state is never saved, so the latest checkpoint is the last good one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from align import checks
from align.errors import RunStopped, stop_exit_code
from align.training.checkpoint import Checkpointer
from align.training.metrics import MeanTracker, MetricsWriter, is_finite
from align.training.state import TrainState


class NonFiniteLoss(RunStopped, RuntimeError):
    """Training produced a NaN/inf loss or gradient; the message names the last good checkpoint."""


class Preempted(RunStopped):
    """SIGTERM before the training loop started (loading the model or the data, tokenising)."""

    exit_code = stop_exit_code("sigterm")


class _Interrupted(BaseException):
    """Raised by the SIGTERM handler into a wait for data; a BaseException, so no `except Exception`
    in the data pipeline can swallow it."""


STOP = object()  # next_batch's answer when SIGTERM ended the wait


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    total_steps: int
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 0  # 0: checkpoint only at the end
    progress: bool = True  # a tqdm bar on stderr

    def __post_init__(self):
        checks.at_least(self, 0, "total_steps", "eval_every", "checkpoint_every")
        checks.at_least(self, 1, "log_every")


@dataclasses.dataclass
class LoopResult:
    state: TrainState
    step: int
    stopped: str  # done | sigterm | data_exhausted
    logs: list[dict]  # every row written to the metrics writer
    data_position: Mapping | None


def count_tokens(batch: Mapping[str, Any]) -> int:
    """Non-padding tokens of a batch (segment_ids != 0); 0 when the batch has no segment ids."""
    seg = batch.get("segment_ids")
    if isinstance(seg, jax.Array) and not seg.is_fully_addressable:
        return int(_count_nonzero(seg))  # a global batch spread over hosts: counted on the mesh
    return 0 if seg is None else int(np.count_nonzero(np.asarray(seg)))


_count_nonzero = jax.jit(jnp.count_nonzero)


@contextlib.contextmanager
def sigterm_flag():
    """Yields a dict whose "set" turns True on SIGTERM (handler installed only in the main thread);
    while its "waiting" is True (next_batch), the handler also interrupts the wait."""
    flag = {"set": False, "waiting": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["set"] = True
        if flag["waiting"]:
            flag["waiting"] = False
            raise _Interrupted

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def next_batch(batches: Iterator, term: dict) -> Any:
    """next(batches, None), or STOP when SIGTERM came before or during the wait for it."""
    if term["set"]:
        return STOP
    try:
        term["waiting"] = True
        try:
            return next(batches, None)
        finally:
            term["waiting"] = False
    except _Interrupted:  # also when it lands in the finally above, before "waiting" is reset
        return STOP


@contextlib.contextmanager
def sigterm_stops(what: str):
    """SIGTERM inside the block raises Preempted saying how to resume (main thread only): for the
    waits before a training loop, which have nothing to checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        # _Interrupted is a BaseException: loading code that catches `Exception` cannot swallow it
        raise _Interrupted

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Interrupted:
        raise Preempted(
            f"stopped by SIGTERM while {what}, before the next training step; nothing was lost: run the "
            "same command again to resume (from the latest checkpoint, if there is one)"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Progress:
    """tqdm bar with loss, tokens/s; its own ETA. Silent when disabled."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)

    def update(self, row: Mapping | None) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if row:
            self.bar.set_postfix(
                loss=f"{row.get('loss', float('nan')):.4f}",
                tok_s=f"{row.get('tokens_per_s', 0):.0f}",
                refresh=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _nonfinite_message(step: int, metrics: Mapping, checkpointer: Checkpointer | None) -> str:
    values = {k: float(np.asarray(v)) for k, v in metrics.items() if k in ("loss", "grad_norm")}
    where = "no checkpoint was saved"
    if checkpointer is not None:
        checkpointer.wait()
        last = checkpointer.latest_step()
        if last is not None:
            where = f"the last good checkpoint is step {last} in {checkpointer.directory}"
    return (
        f"non-finite training metrics at step {step}: {values}. The update was not applied and the run "
        f"stopped; {where}. Lower the learning rate, check the data of this step, or resume from it."
    )


def train_loop(
    step_fn: Callable,
    state: TrainState,
    batches: Iterator,
    config: LoopConfig,
    *,
    checkpointer: Checkpointer | None = None,
    evaluate: Callable[[TrainState], Mapping] | None = None,
    writer: MetricsWriter | None = None,
    data_position: Mapping | None = None,
    tokens_in: Callable[[Mapping], int] = count_tokens,
    on_step: Callable[[int, TrainState], None] | None = None,
    metrics_window: Mapping[str, float] | None = None,
) -> LoopResult:
    """Run `step_fn` from `state.step` to `config.total_steps` (see the module docstring).

    evaluate(state) -> {name: value} is logged with an "eval/" prefix; on_step(step, state) runs after
    each step's checkpoint (a hook for tests and custom callbacks). metrics_window: the weighted metric
    sums of the steps since the last log row, as a checkpoint's manifest["metrics_window"] holds them.
    """
    step = int(jax.device_get(state.step))
    logs: list[dict] = []
    tracker, tokens, t0 = MeanTracker(), 0, time.perf_counter()
    tracker.sums = {k: float(v) for k, v in (metrics_window or {}).items()}
    progress = _Progress(config.progress, step, config.total_steps)
    stopped = "done"

    def log(row: dict) -> None:
        logs.append({"step": step, **row})
        if writer is not None:
            writer.write(step, row)

    def save() -> None:
        if checkpointer is not None:
            checkpointer.save(state, data_position=data_position, extra={"metrics_window": tracker.sums})

    with sigterm_flag() as term:
        try:
            while step < config.total_steps:
                item = next_batch(batches, term)
                if item is STOP:
                    stopped = "sigterm"
                    break
                if item is None:
                    stopped = "data_exhausted"
                    break
                batch, position = item
                tokens += tokens_in(batch)
                state, metrics = step_fn(state, batch)
                metrics = jax.device_get(metrics)
                step += 1
                if not is_finite(metrics):
                    raise NonFiniteLoss(_nonfinite_message(step, metrics, checkpointer))
                data_position = position
                tracker.add(metrics)
                last = step == config.total_steps
                row = None
                if step % config.log_every == 0 or last:
                    elapsed = time.perf_counter() - t0
                    row = {
                        **tracker.result(),
                        "tokens_per_s": tokens / max(elapsed, 1e-9),
                        "seconds": elapsed,
                    }
                    log(row)
                    tokens, t0 = 0, time.perf_counter()
                if evaluate is not None and ((config.eval_every and step % config.eval_every == 0) or last):
                    log({f"eval/{k}": v for k, v in evaluate(state).items()})
                progress.update(row)
                if last or (config.checkpoint_every and step % config.checkpoint_every == 0):
                    save()
                if on_step is not None:
                    on_step(step, state)
            save()
            if checkpointer is not None:
                checkpointer.wait()
        finally:
            progress.close()
    return LoopResult(state=state, step=step, stopped=stopped, logs=logs, data_position=data_position)
