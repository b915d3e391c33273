"""Metrics: weighted means across micro-batches and steps, and the JSONL / TensorBoard writers.

Convention for a loss function's metrics dict (scalars):
    "weight"        the micro-batch's weight in every mean (e.g. its supervised token count);
                    1 when absent, so micro-batches of equal size count equally
    "n_*"           counts (n_tokens, n_pairs): summed, never averaged
    anything else   a per-micro-batch mean: combined as sum_i w_i m_i / sum_i w_i
A loss returned as a per-micro-batch mean with weight w_i then accumulates to the mean over the whole
batch, which is what makes k micro-batches equal one batch of k (see align.training.step).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

WEIGHT = "weight"


def is_count(name: str) -> bool:
    return name == WEIGHT or name.startswith("n_")


def weighted_sums(metrics: Mapping, weight) -> dict:
    """Per-micro-batch metrics -> sums: counts as they are, means times `weight`, plus the weight."""
    out = {k: (v if is_count(k) else v * weight) for k, v in metrics.items() if k != WEIGHT}
    out[WEIGHT] = weight
    return out


def finalize(sums: Mapping) -> dict:
    """Sums -> means (a zero total weight gives the raw sums instead of NaN)."""
    w = sums[WEIGHT]
    denom = w if isinstance(w, (int, float)) and w else w + (w == 0)
    return {k: (v if is_count(k) else v / denom) for k, v in sums.items()}


class MeanTracker:
    """Host-side weighted means of step metrics over a logging window."""

    def __init__(self):
        self.sums: dict[str, float] = {}

    def add(self, metrics: Mapping) -> None:
        w = float(metrics.get(WEIGHT, 1.0))
        for k, v in weighted_sums({k: float(np.asarray(v)) for k, v in metrics.items()}, w).items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def result(self, reset: bool = True) -> dict[str, float]:
        out = finalize(self.sums) if self.sums else {}
        if reset:
            self.sums = {}
        return out


def is_finite(metrics: Mapping) -> bool:
    """All float metrics finite (a "finite" flag from the step, when present, must be true)."""
    if "finite" in metrics and not bool(np.asarray(metrics["finite"])):
        return False
    return all(math.isfinite(float(np.asarray(v))) for v in metrics.values())


class JsonlWriter:
    """Append-only `{"step": s, ...}` lines; `truncate_after(s)` drops lines a resumed run will redo."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, metrics: Mapping) -> None:
        row = {"step": int(step), **{k: _json_value(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_after(self, step: int) -> None:
        """Keep the rows of steps <= `step`; a torn line (a run killed mid-write) is dropped too."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if _row_step(line) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, self.path)


def _row_step(line: str) -> float:
    """The "step" of one JSONL row; inf for a blank, torn or foreign line (never kept on truncation)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return math.inf
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, (int, float)) else math.inf


def read_metrics(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _json_value(v):
    v = np.asarray(v)
    return v.item() if v.ndim == 0 else v.tolist()


REPORTERS = ("jsonl", "tensorboard", "wandb")  # train.report_to's names (TRL's report_to, where it overlaps)


def wandb_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("wandb") is not None


def check_report_to(names) -> None:
    """A FieldError (located at train.report_to by the config reader) for an unknown or absent writer."""
    from align.checks import FieldError

    for name in names:
        if name not in REPORTERS:
            raise FieldError("report_to", f"{name!r} is not one of {', '.join(REPORTERS)}")
    if "wandb" in names and not wandb_installed():
        raise FieldError(
            "report_to", "wandb is not installed: pip install 'align[wandb]' (or pip install wandb)"
        )


def open_metrics_writer(
    run_dir: str | os.PathLike, report_to, config: Mapping | None = None
) -> MetricsWriter:
    """The writers `report_to` names: run_dir/metrics.jsonl, run_dir/tb/, a Weights & Biases run.

    W&B reads WANDB_PROJECT (default "align"), WANDB_MODE (offline: files under run_dir/wandb only) and
    its API key from the environment; the run is named after run_dir and gets `config`.

    Only process 0 of a multi-process run writes (the metrics are the same global means on every
    process); the others get a writer that writes nothing."""
    from align import distributed

    run_dir = Path(run_dir)
    check_report_to(report_to)
    if not distributed.is_primary():
        return MetricsWriter(None)
    wandb_run = None
    if "wandb" in report_to:
        import wandb

        project = os.environ.get("WANDB_PROJECT", "align")
        wandb_run = wandb.init(
            project=project, dir=str(run_dir), name=run_dir.name, config=dict(config or {})
        )
    return MetricsWriter(
        run_dir / "metrics.jsonl" if "jsonl" in report_to else None,
        run_dir / "tb" if "tensorboard" in report_to else None,
        wandb_run=wandb_run,
    )


def _scalars(metrics: Mapping) -> dict[str, float]:
    return {
        k: float(np.asarray(v))
        for k, v in metrics.items()
        if np.ndim(v) == 0 and isinstance(np.asarray(v).item(), (int, float))
    }


class MetricsWriter:
    """JSONL (when `jsonl_path` is given), TensorBoard event files (tensorboardX, when `tensorboard_dir`
    is) and a Weights & Biases run (when `wandb_run` is): see open_metrics_writer."""

    def __init__(
        self,
        jsonl_path: str | os.PathLike | None,
        tensorboard_dir: str | os.PathLike | None = None,
        wandb_run=None,
    ):
        self.jsonl = JsonlWriter(jsonl_path) if jsonl_path is not None else None
        self.tb = None
        self.wandb = wandb_run
        if tensorboard_dir is not None:
            from tensorboardX import SummaryWriter

            # tensorboardX names event files by the second only and opens them with "wb": a resumed run
            # started within the same second would truncate the crashed run's file. The nanosecond
            # suffix keeps the name unique and sorting by start time, the order TensorBoard reads them.
            self.tb = SummaryWriter(str(tensorboard_dir), filename_suffix=f".{time.time_ns()}")

    def write(self, step: int, metrics: Mapping) -> None:
        if self.jsonl is not None:
            self.jsonl.write(step, metrics)
        scalars = _scalars(metrics)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=int(step))

    def truncate_after(self, step: int) -> None:
        """Drop the rows of steps > `step` (a resumed run redoes them) from metrics.jsonl and TensorBoard.

        W&B needs nothing: a resumed process opens a new W&B run, which starts at the resumed step."""
        if self.jsonl is not None:
            self.jsonl.truncate_after(step)
        if self.tb is not None:
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            # Event files are append-only: what SummaryWriter(purge_step=step + 1) writes, a SessionLog
            # START at step + 1, makes TensorBoard discard the earlier files' events of steps >= step + 1.
            start = SessionLog(status=SessionLog.START)
            self.tb.file_writer.add_event(Event(step=step + 1, session_log=start))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
