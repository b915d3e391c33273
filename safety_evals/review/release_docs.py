"""Read the pipeline's release documents: the before/after comparison and the gate verdicts.

`align.comparison/v1` (compare/comparison.json of a pipeline run, or `align compare`):

    {"schema": "align.comparison/v1", "base": "base", "models": ["base", "sft", "rl", ...],
     "rows": [{"suite", "metric", "higher_is_better", "description",
               "values": {label: {"value", "ci_low", "ci_high", "n"}},
               "change": {label: {"mean", "ci_low", "ci_high", "n_paired", "method"}}}]}

`change` holds the paired difference of each non-base model from the base (its paired bootstrap
interval). A verdict (gate/<variant>/verdict.json): {"variant", "passed", "failed", "checks":
[{"name", "status", "message", ...}]}.

A consumer-side reader like documents.py: the dashboard and the model cards read these, so a wrong
type or a missing field raises ResultsError naming the file and the JSON path, never a KeyError.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safety_evals.review.documents import ResultsError

COMPARISON_SCHEMA = "align.comparison/v1"
UNPAIRED = "unpaired"  # a change's `method` when examples could not be paired (review/compare.py)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A value (or a paired change) with its 95% interval; `n` counts examples (pairs for a change)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    method: str | None = None

    def excludes_zero(self) -> bool:
        """The interval lies wholly on one side of zero (a change distinguishable from none)."""
        lo, hi = self.ci_low, self.ci_high
        return lo is not None and hi is not None and (lo > 0 or hi < 0)


@dataclasses.dataclass(frozen=True)
class ComparisonRow:
    suite: str
    metric: str
    higher_is_better: bool | None
    description: str
    values: dict[str, Estimate]  # model label -> its value
    change: dict[str, Estimate]  # non-base model label -> paired change from the base

    @property
    def full_name(self) -> str:
        return f"{self.suite}.{self.metric}"


@dataclasses.dataclass(frozen=True)
class ComparisonDoc:
    base: str
    models: list[str]
    rows: list[ComparisonRow]
    source: str = "<memory>"


@dataclasses.dataclass(frozen=True)
class GateCheck:
    name: str
    status: str  # pass | fail | skip
    message: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    variant: str
    passed: bool
    failed: int
    checks: list[GateCheck]
    source: str = "<memory>"


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(obj: Any, key: str, types, where: str, source: str, optional: bool = False):
    if not isinstance(obj, Mapping):
        raise ResultsError(f"{source}: {where or '<document>'}: expected an object")
    if key not in obj:
        if optional:
            return None
        raise ResultsError(f"{source}: {_at(where, key)}: missing")
    value = obj[key]
    bad_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
    if (value is None and optional) or (isinstance(value, types) and not bad_bool):
        return value
    raise ResultsError(f"{source}: {_at(where, key)}: unexpected {type(value).__name__}")


def _estimate(obj: Any, where: str, source: str, value_key: str, n_key: str) -> Estimate:
    num = (int, float)
    return Estimate(
        _get(obj, value_key, num, where, source, optional=True),
        _get(obj, "ci_low", num, where, source, optional=True),
        _get(obj, "ci_high", num, where, source, optional=True),
        _get(obj, n_key, int, where, source, optional=True),
        _get(obj, "method", str, where, source, optional=True),
    )


def _row(obj: Any, where: str, source: str) -> ComparisonRow:
    values = _get(obj, "values", Mapping, where, source)
    change = _get(obj, "change", Mapping, where, source, optional=True) or {}
    return ComparisonRow(
        suite=_get(obj, "suite", str, where, source),
        metric=_get(obj, "metric", str, where, source),
        higher_is_better=_get(obj, "higher_is_better", bool, where, source, optional=True),
        description=_get(obj, "description", str, where, source, optional=True) or "",
        values={k: _estimate(v, f"{where}.values.{k}", source, "value", "n") for k, v in values.items()},
        change={
            k: _estimate(v, f"{where}.change.{k}", source, "mean", "n_paired") for k, v in change.items()
        },
    )


def comparison_from_json(obj: Any, source: str = "<memory>") -> ComparisonDoc:
    """Validate a decoded comparison document."""
    schema = _get(obj, "schema", str, "", source)
    if schema != COMPARISON_SCHEMA:
        raise ResultsError(f"{source}: schema: {schema!r} is not {COMPARISON_SCHEMA!r}")
    models = _get(obj, "models", list, "", source)
    if not all(isinstance(m, str) for m in models):
        raise ResultsError(f"{source}: models: expected a list of model labels")
    base = _get(obj, "base", str, "", source)
    if base not in models:
        raise ResultsError(f"{source}: base: {base!r} is not one of models {models}")
    rows = [_row(r, f"rows[{i}]", source) for i, r in enumerate(_get(obj, "rows", list, "", source))]
    return ComparisonDoc(base, models, rows, source)


def verdict_from_json(obj: Any, source: str = "<memory>") -> Verdict:
    """Validate a decoded verdict document."""
    variant, passed = _get(obj, "variant", str, "", source), _get(obj, "passed", bool, "", source)
    failed, checks = _get(obj, "failed", int, "", source), _get(obj, "checks", list, "", source)
    return Verdict(
        variant=variant,
        passed=passed,
        failed=failed,
        checks=[
            GateCheck(
                _get(c, "name", str, f"checks[{i}]", source),
                _get(c, "status", str, f"checks[{i}]", source),
                _get(c, "message", str, f"checks[{i}]", source, optional=True) or "",
            )
            for i, c in enumerate(checks)
        ],
        source=source,
    )


def load_comparison(path: str | Path) -> ComparisonDoc:
    return comparison_from_json(_read_json(path), str(path))


def load_verdict(path: str | Path) -> Verdict:
    return verdict_from_json(_read_json(path), str(path))


def as_comparison(obj: ComparisonDoc | Mapping) -> ComparisonDoc:
    return obj if isinstance(obj, ComparisonDoc) else comparison_from_json(obj)


def as_verdict(obj: Verdict | Mapping) -> Verdict:
    return obj if isinstance(obj, Verdict) else verdict_from_json(obj)


# Where a pipeline run directory keeps them (pipelines/stages/gate.py): one comparison of every variant
# when all share one prompting, else one per variant (base, sft, that variant).
COMPARISON_FILE = "compare/comparison.json"
VARIANT_COMPARISONS = "compare/*/comparison.json"
VERDICT_FILES = "gate/*/verdict.json"


def run_documents(run_dir: str | Path) -> tuple[dict[str, ComparisonDoc], dict[str, Verdict]]:
    """The comparisons ({"": the combined one} or {variant: its own}) and the verdicts (by variant) a
    pipeline run wrote; empty where absent."""
    run_dir = Path(run_dir)
    if (run_dir / COMPARISON_FILE).is_file():
        comparisons = {"": load_comparison(run_dir / COMPARISON_FILE)}
    else:
        comparisons = {p.parent.name: load_comparison(p) for p in sorted(run_dir.glob(VARIANT_COMPARISONS))}
    verdicts = [load_verdict(p) for p in sorted(run_dir.glob(VERDICT_FILES))]
    return comparisons, {v.variant: v for v in verdicts}
