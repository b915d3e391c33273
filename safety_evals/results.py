"""The eval results document (docs/results_schema.md): building blocks, suite capture, atomic write.

A suite returns a `SuiteResult`; `run_suite` times it and turns an exception into a `failed`
record (never a dropped suite, never zeros); `build_document` assembles the run; `write_atomic`
writes it through a temp file and `os.replace`, so readers never see half a file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import re
import secrets
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from align.data_dir import portable_path
from align.fileio import write_text_atomic
from safety_evals import bootstrap
from align.intervals import wilson_ci

SCHEMA = "align.eval_results/v1"
_CHUNK = 1 << 20


def clean_float(x: Any) -> float | None:
    """A JSON-safe float: NaN and +-inf become None (the schema forbids them)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric with its 95% interval and the number of examples behind it.

    `interval` names how the interval was made: "bootstrap" (the percentile bootstrap, the default,
    not written to JSON) or "wilson" (a proportion: every example scored 0 or 1)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool | None  # None: closer to `target` is better
    target: float | None = None
    description: str = ""
    interval: str = "bootstrap"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": clean_float(self.value),
            "ci_low": clean_float(self.ci_low),
            "ci_high": clean_float(self.ci_high),
            "n": int(self.n),
            "higher_is_better": self.higher_is_better,
        }
        if self.target is not None:
            out["target"] = float(self.target)
        if self.description:
            out["description"] = self.description
        if self.interval != "bootstrap":
            out["interval"] = self.interval
        return out


def mean_metric(
    values: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool | None,
    description: str = "",
    target: float | None = None,
    scale: float = 1.0,
) -> Metric:
    """mean(values) * scale with its 95% CI; value None when there are no values.

    A proportion (every value 0 or 1) gets the Wilson interval, anything else the percentile
    bootstrap: the bootstrap of 0 hits out of n is [0, 0], which claims certainty it has not got."""
    x = np.asarray(values, dtype=np.float64)
    proportion = x.size > 0 and bool(np.all((x == 0) | (x == 1)))
    low, high = wilson_ci(float(x.sum()), x.size) if proportion else bootstrap.mean_ci(x)
    if not proportion:
        low, high = _covering(float(x.mean()) if x.size else None, low, high)
    value = float(x.mean()) * scale if x.size else None
    return Metric(
        value,
        None if low is None else low * scale,
        None if high is None else high * scale,
        int(x.size),
        higher_is_better,
        target,
        description,
        "wilson" if proportion else "bootstrap",
    )


def statistic_metric(
    n: int,
    statistic: Callable[[np.ndarray], float | None],
    *,
    higher_is_better: bool | None,
    description: str = "",
    target: float | None = None,
) -> Metric:
    """statistic(all n examples) with a CI from recomputing it on resampled examples."""
    value = statistic(np.arange(n)) if n else None
    low, high = _covering(value, *bootstrap.statistic_ci(n, statistic))
    return Metric(value, low, high, n, higher_is_better, target, description)


def _covering(value, low, high) -> tuple[float | None, float | None]:
    """The interval widened to hold the point value. The percentile bootstrap of a statistic with a
    kink (ICAT's min(SS, 100 - SS) at SS = 50) can lie wholly on one side of it, and the readers
    refuse a value outside its own interval (safety_evals/review/consistency.py)."""
    if value is None or low is None or high is None or not math.isfinite(value):
        return low, high
    return min(low, value), max(high, value)


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Where a suite's examples came from: hub name or path, content sha256, examples used, and what
    the reader dropped from them ({what: count}, e.g. {"blank answer choices": 39}; recorded only
    when something was: a reader never drops silently)."""

    source: str
    sha256: str
    n: int
    dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # the source as configs name it (${ALIGN_DATA_DIR}/..., ~/...): no path of the machine that ran it
        out = {"source": portable_path(self.source), "sha256": self.sha256, "n": int(self.n)}
        return out | ({"dropped": {k: int(v) for k, v in self.dropped.items()}} if self.dropped else {})


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    """What a suite returns. `judges` maps each judge role the suite used (e.g. "truth") to the
    judge's identity {"name", "sha256"}: a metric is comparable across runs only under the same judge."""

    data: DataInfo
    metrics: Mapping[str, Metric]
    examples: Sequence[Mapping[str, Any]] = ()
    judges: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def example(
    id_: str | int,
    *,
    prompt: str,
    output: str,
    score: float | None,
    label: str | None,
    metric: str,
    **extra: Any,
) -> dict[str, Any]:
    """One per-example record for the dashboard drill-down (outputs are untrusted text)."""
    return {
        "id": str(id_),
        "prompt": prompt,
        "output": output,
        "score": clean_float(score),
        "label": label,
        "metric": metric,
        "extra": _json_safe(extra),
    }


def _json_safe(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return clean_float(x)
    return x


_FRAME = re.compile(r'File "([^"]+)"')
_ROOTS = ("align", "safety_evals", "pipelines", "reward_models", "tests", "site-packages")


def portable_traceback(text: str) -> str:
    """Traceback file names without this machine's layout (results files travel): from the last
    package directory on (`safety_evals/suites/x.py`, `jax/_src/y.py` for site-packages), else the
    file name alone."""

    def short(m: re.Match) -> str:
        parts = Path(m.group(1)).parts
        for i in range(len(parts) - 1, -1, -1):
            if parts[i] in _ROOTS:
                while parts[i] != "site-packages" and i > 0 and parts[i - 1] in _ROOTS[:-1]:
                    i -= 1  # tests/safety_evals/...: the outer package
                return 'File "' + "/".join(parts[i + (parts[i] == "site-packages") :]) + '"'
        return f'File "{parts[-1] if parts else ""}"'

    return _FRAME.sub(short, text)


def run_suite(
    version: str, fn: Callable[[], SuiteResult], *, clock: Callable[[], float] = time.perf_counter
) -> dict[str, Any]:
    """Run one suite and return its document entry; any exception becomes status "failed"."""
    start = clock()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - a failing suite must be recorded, not crash the run
        tail = portable_traceback("".join(traceback.format_exception(exc)[-6:]))
        return {
            "status": "failed",
            "version": version,
            "error": f"{type(exc).__name__}: {exc}\n{tail}",
            "data": None,
            "seconds": round(clock() - start, 3),
            "metrics": {},
            "examples": [],
            "judges": {},
        }
    return {
        "status": "ok",
        "version": version,
        "error": None,
        "data": result.data.to_json(),
        "seconds": round(clock() - start, 3),
        "metrics": {name: m.to_json() for name, m in result.metrics.items()},
        "examples": [_json_safe(e) for e in result.examples],
        "judges": {role: _json_safe(dict(ident)) for role, ident in result.judges.items()},
    }


def new_run_id(now: dt.datetime | None = None) -> str:
    """'20261123T150102Z-3f2a9c': UTC time plus 24 random bits, unique per run."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def utc_iso(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def files_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of every file under a directory in sorted relative-path order."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{root}: no files to hash")
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def model_record(
    name: str, path: str | None, *, variant: str | None = None, step: int | None = None
) -> dict[str, Any]:
    """The document's `model` entry; the sha256 is None when there are no local weights to hash."""
    sha = files_sha256(path) if path and os.path.exists(path) else None
    where = portable_path(os.path.abspath(path)) if path and os.path.exists(path) else path
    return {"name": name, "path": where, "sha256": sha, "variant": variant, "step": step}


def build_document(
    *,
    model: Mapping[str, Any],
    config: Mapping[str, Any],
    suites: Mapping[str, Mapping[str, Any]],
    run_id: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "schema": SCHEMA,
        "run_id": run_id or new_run_id(now),
        "created": created or utc_iso(now),
        "model": dict(model),
        "config": dict(config),
        "suites": {k: dict(v) for k, v in suites.items()},
    }


def write_atomic(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write JSON to a temp file in the target directory, fsync, then os.replace it into place
    (`align.fileio.write_text_atomic`: the file keeps the mode a plain open() would give it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False)
    write_text_atomic(target, text)
