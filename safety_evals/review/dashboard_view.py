"""The dashboard's view model: which runs and metrics the page shows, each cell's verdict against the
baseline (the gate's own rule), and the worst examples per metric. No HTML here (see
dashboard_assets/sections.py); `safety_evals.review.dashboard` re-exports the public names.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from safety_evals.review.documents import Example, MetricReading, Results
from safety_evals.review.gate import Comparison, Direction, compare
from safety_evals.review.labels import run_label
from safety_evals.review.policy import Policy
from safety_evals.review.release_docs import ComparisonDoc, ComparisonRow, Verdict


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (run, metric) entry of the tables."""

    state: str  # regressed | improved | same | baseline | failed | missing
    metric: MetricReading | None
    comparison: Comparison | None = None
    drill_id: str | None = None


@dataclasses.dataclass(frozen=True)
class View:
    """Everything the page shows, computed before any HTML is written."""

    columns: list[Results]  # runs shown side by side
    trend_runs: list[Results]  # every run, oldest first, for the trend plots
    baseline: Results | None
    suites: dict[str, list[str]]  # suite -> metric short names, first-seen order
    cells: dict[tuple[str, str], Cell]  # (run_id, full metric name) -> Cell
    drill: list[Results]  # runs with a drill-down section
    labels: dict[str, str]  # run_id -> short plot label
    # the post-training effect (before/after): {"": one table} or {variant: its own} when the variants
    # were prompted differently and each has its own base run
    comparisons: dict[str, ComparisonDoc] = dataclasses.field(default_factory=dict)
    verdicts: dict[str, Verdict] = dataclasses.field(default_factory=dict)  # variant -> gate verdict


def effect_state(row: ComparisonRow, label: str) -> str:
    """improved | regressed: the paired change's interval excludes zero, in the metric's good or bad
    direction; same: it does not, or the metric has no direction (closer-to-target metrics)."""
    change = row.change.get(label)
    if change is None or change.value is None or not change.excludes_zero() or row.higher_is_better is None:
        return "same"
    return "improved" if (change.value > 0) == row.higher_is_better else "regressed"


def short_labels(runs: list[Results]) -> dict[str, str]:
    """Plot labels: no model name when all runs share it, a step only when recorded; the run id added
    where labels collide."""
    one_model = len({r.model.name for r in runs}) == 1
    labels = {
        r.run_id: run_label(r.model.name, r.model.variant, r.model.step, with_name=not one_model)
        for r in runs
    }
    counts = Counter(labels.values())
    return {rid: f"{lab} ({rid})" if counts[lab] > 1 else lab for rid, lab in labels.items()}


def _rule_for(policy: Policy | None, name: str):
    return next((r for r in policy.rules if r.metric == name), None) if policy else None


def _cell(run: Results, suite: str, name: str, baseline: Results | None, policy: Policy | None) -> Cell:
    s = run.suites.get(suite)
    if s is not None and not s.ok:
        return Cell("failed", None)
    m = s.metrics.get(name) if s else None
    if m is None or m.value is None:
        return Cell("missing", m)
    if baseline is None:
        return Cell("same", m)
    if run.run_id == baseline.run_id:
        return Cell("baseline", m)
    bm = baseline.metrics().get(m.full_name)
    rule = _rule_for(policy, m.full_name)
    direction = Direction.of(m, rule)
    if bm is None or bm.value is None or not direction.known:
        return Cell("same", m)
    c = compare(m, bm, direction, rule.regression if rule and rule.regression is not None else 0.0)
    return Cell("regressed" if c.regressed else "improved" if c.improved else "same", m, c)


def build_view(
    reviewed: list[Results],
    past: list[Results],
    baseline: Results | None,
    policy: Policy | None,
    *,
    comparisons: dict[str, ComparisonDoc] | None = None,
    verdicts: dict[str, Verdict] | None = None,
) -> View:
    """Columns = reviewed runs (+ baseline), or the 6 newest history runs when no file is given."""
    by_id = {r.run_id: r for r in [*past, *reviewed] + ([baseline] if baseline else [])}
    trend_runs = sorted(by_id.values(), key=lambda r: (r.created, r.run_id))
    columns = list(reviewed) or trend_runs[-6:]
    if baseline and all(c.run_id != baseline.run_id for c in columns):
        columns = [baseline, *columns]
    columns = list({c.run_id: c for c in columns}.values())
    columns.sort(
        key=lambda r: (
            baseline is None or r.run_id != baseline.run_id,
            r.model.name,
            r.model.variant or "",
            r.model.step or 0,
            r.created,
        )
    )
    suites: dict[str, list[str]] = {}
    for r in columns:
        for sname, s in r.suites.items():
            names = suites.setdefault(sname, [])
            names += [m for m in s.metrics if m not in names]
    cells = {}
    for r in columns:
        for sname, names in suites.items():
            for name in names:
                cells[(r.run_id, f"{sname}.{name}")] = _cell(r, sname, name, baseline, policy)
    reviewed_ids = {r.run_id for r in reviewed}
    drill = [r for r in columns if r.run_id in reviewed_ids] or columns[-1:]
    labels = short_labels(columns)
    release = (dict(comparisons or {}), dict(verdicts or {}))
    return View(columns, trend_runs, baseline, suites, cells, drill, labels, *release)


# ---------------------------------------------------------------- worst examples


def worst_examples(examples: list[Example], metric: MetricReading | None, k: int) -> list[Example]:
    """The k worst examples by score in the metric's bad direction; null scores last."""
    direction = Direction.of(metric) if metric else Direction(None)

    def badness(e: Example) -> float:
        if direction.higher_is_better is None and direction.target is None:
            return abs(e.score)
        return direction.badness(e.score)

    scored = sorted((e for e in examples if e.score is not None), key=badness, reverse=True)
    return (scored + [e for e in examples if e.score is None])[:k]


def worst_rule(metric: MetricReading | None) -> str:
    if metric is None or (metric.higher_is_better is None and metric.target is None):
        return "largest |score| first"
    if metric.higher_is_better is None:
        return f"furthest from target {metric.target:g} first"
    return "lowest score first" if metric.higher_is_better else "highest score first"


def metric_anchors(view: View) -> dict[str, str]:
    """suite.metric -> id of its table row (counters, never names)."""
    names = [f"{sname}.{m}" for sname, ms in view.suites.items() for m in ms]
    return {full: f"metric-{i}" for i, full in enumerate(names)}


def drill_ids(view: View) -> dict[tuple[str, str], str]:
    """(run_id, suite.metric or suite.*) -> element id; counters, never names, so ids stay safe."""
    ids = {}
    for i, r in enumerate(view.drill):
        for sname, s in r.suites.items():
            for j, key in enumerate(sorted({e.metric or "*" for e in s.examples})):
                ids[(r.run_id, f"{sname}.{key}")] = f"ex-{i}-{len(ids)}-{j}"
    return ids
