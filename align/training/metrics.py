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


class MetricsWriter:
    """JSONL (always) + TensorBoard event files (tensorboardX, when `tensorboard_dir` is given)."""

    def __init__(self, jsonl_path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None):
        self.jsonl = JsonlWriter(jsonl_path)
        self.tb = None
        if tensorboard_dir is not None:
            from tensorboardX import SummaryWriter

            # tensorboardX names event files by the second only and opens them with "wb": a resumed run
            # started within the same second would truncate the crashed run's file. The nanosecond
            # suffix keeps the name unique and sorting by start time, the order TensorBoard reads them.
            self.tb = SummaryWriter(str(tensorboard_dir), filename_suffix=f".{time.time_ns()}")

    def write(self, step: int, metrics: Mapping) -> None:
        self.jsonl.write(step, metrics)
        if self.tb is not None:
            for k, v in metrics.items():
                if np.ndim(v) == 0 and isinstance(np.asarray(v).item(), (int, float)):
                    self.tb.add_scalar(k, float(np.asarray(v)), step)

    def truncate_after(self, step: int) -> None:
        """Drop the rows of steps > `step` (a resumed run redoes them) from metrics.jsonl and TensorBoard."""
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
