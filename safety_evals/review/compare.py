"""`align compare`: each metric of several results documents beside a base, with the change from the base.

    change(label) = metric(label) - metric(base)

Paired where it can be: the two documents' per-example records are matched by (id, prompt), the
metric is recomputed on both from the matched records (review/per_example.py), and its 95% interval
is the percentile bootstrap of the difference over the same resampled examples for both models
(safety_evals/bootstrap.py: same seed, same 1000 resamples), so the noise the two share (hard
questions, easy ones) cancels. A model change shows itself with far fewer examples this way than by
comparing two independent intervals.

Unpaired where it cannot: a metric without a recipe, documents without matching examples, or a
recipe that does not reproduce the document's own value (a suite changed its formula). The interval
of the difference is then MOVER's (Newcombe 1998; Zou & Donner 2008) from the two 95% intervals,
treated as independent, and the change's `method` says "unpaired" with a `note` saying why.

A metric is compared only under the same suite version, data, example limit, judges and prompting
(safety_evals.review.gate.incomparable): otherwise `compare_documents` refuses with InvalidInput.

The document (`align.comparison/v1`):
    {"schema", "base": label, "models": [labels, base first],
     "rows": [{"suite", "metric", "higher_is_better", "description",
               "values": {label: {"value", "ci_low", "ci_high", "n"}},
               "change": {label: {"mean", "ci_low", "ci_high", "n_paired", "method"[, "note"]}}}]}
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from align.errors import InvalidInput
from safety_evals import bootstrap
from safety_evals.review import per_example
from safety_evals.review.documents import MetricReading, Results, SuiteReading, load_results
from safety_evals.review.gate import incomparable

SCHEMA = "align.comparison/v1"
PAIRED, UNPAIRED = "paired_bootstrap", "unpaired"
_TOLERANCE = 1e-6  # a recomputed metric must reproduce the document's value to this (relative) precision


def compare_documents(base: Results, others: Mapping[str, Results], base_label: str = "base") -> dict:
    """The comparison document of `others` ({label: results}) against `base` (module docstring)."""
    if base_label in others:
        raise InvalidInput(f"label {base_label!r} names both the base and another model")
    for label, other in others.items():
        for suite in set(base.suites) & set(other.suites):
            if base.suites[suite].ok and other.suites[suite].ok:
                why = incomparable(suite, other, base)
                if why:
                    raise InvalidInput(f"{other.source} ({label}) vs base {base.source}: {suite}: {why}")
    rows = []
    for suite in base.suites.values():
        if not suite.ok:
            continue
        paired = {label: _Pairing(suite, other.suites.get(suite.name)) for label, other in others.items()}
        for m in suite.metrics.values():
            rows.append(_row(m, others, paired, base_label))
    return {"schema": SCHEMA, "base": base_label, "models": [base_label, *others], "rows": rows}


def _reading(m: MetricReading | None) -> dict[str, Any]:
    if m is None:
        return {"value": None, "ci_low": None, "ci_high": None, "n": None}
    return {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n}


def _row(m: MetricReading, others: Mapping[str, Results], paired: dict, base_label: str) -> dict:
    values = {base_label: _reading(m)}
    change = {}
    for label, other in others.items():
        om = other.metrics().get(m.full_name)
        values[label] = _reading(om)
        change[label] = paired[label].change(m, om)
    return {
        "suite": m.suite,
        "metric": m.name,
        "higher_is_better": m.higher_is_better,
        "description": m.description,
        "values": values,
        "change": change,
    }


class _Pairing:
    """The matched examples of one suite in the base and in another document."""

    def __init__(self, base: SuiteReading, other: SuiteReading | None):
        self.suite, self.why = base.name, None
        self.base_cols = self.other_cols = None
        if other is None or not other.ok:
            self.why = "the suite is missing or failed in this model's results"
            return
        self.base_cols = per_example.columns(base.name, base.examples)
        self.other_cols = per_example.columns(base.name, other.examples)
        if self.base_cols is None or self.other_cols is None:
            self.why = f"no per-example recipe for suite {base.name} (or its records lack the fields)"
            return
        keys_b, keys_o = _keys(base), _keys(other)
        if len(set(keys_b)) < len(keys_b) or len(set(keys_o)) < len(keys_o):
            self.why = "example ids repeat, so examples cannot be matched"
            return
        where = {k: i for i, k in enumerate(keys_o)}
        shared = [i for i, k in enumerate(keys_b) if k in where]
        self.idx_b = np.array(shared, dtype=np.int64)
        self.idx_o = np.array([where[keys_b[i]] for i in shared], dtype=np.int64)

    def change(self, bm: MetricReading, om: MetricReading | None) -> dict[str, Any]:
        if om is None or om.value is None or bm.value is None:
            return _unpaired(bm, om, "the metric is missing or null in one of the two documents")
        why = self.why or self._check(bm, om)
        if why:
            return _unpaired(bm, om, why)
        stat = per_example.statistic(self.suite, bm.name)
        rows = per_example.metric_rows(self.suite, bm.name, self.base_cols)
        rows_o = per_example.metric_rows(self.suite, bm.name, self.other_cols)
        keep = rows[self.idx_b] & rows_o[self.idx_o]
        b = per_example.take(self.base_cols, self.idx_b[keep])
        o = per_example.take(self.other_cols, self.idx_o[keep])

        def diff(idx: np.ndarray) -> float | None:
            x, y = stat(per_example.take(o, idx)), stat(per_example.take(b, idx))
            return None if x is None or y is None else x - y

        n = int(keep.sum())
        mean = diff(np.arange(n)) if n else None
        if mean is None:
            return _unpaired(bm, om, "the metric is undefined on the matched examples")
        low, high = bootstrap.statistic_ci(n, diff)
        if low is not None:  # the percentile interval can miss a kinked statistic's point value
            low, high = min(low, mean), max(high, mean)
        return {"mean": mean, "ci_low": low, "ci_high": high, "n_paired": n, "method": PAIRED}

    def _check(self, bm: MetricReading, om: MetricReading) -> str | None:
        """Why the recipe cannot stand in for the suite's formula here, or None."""
        stat = per_example.statistic(self.suite, bm.name)
        if stat is None:
            return f"no per-example recipe for {bm.full_name}"
        for m, cols in ((bm, self.base_cols), (om, self.other_cols)):
            rows = per_example.metric_rows(self.suite, m.name, cols)
            got = stat(per_example.take(cols, np.flatnonzero(rows))) if rows is not None else None
            if got is None or not math.isclose(got, m.value, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE):
                return f"the per-example records do not reproduce {m.full_name} = {m.value:.6g}"
        return None


def _keys(suite: SuiteReading) -> list[tuple[str, str, str | None]]:
    return [(e.id, e.prompt, e.metric) for e in suite.examples]


def _unpaired(bm: MetricReading, om: MetricReading | None, why: str) -> dict[str, Any]:
    """MOVER interval of a difference of independent estimates from their own 95% intervals."""
    out = {"mean": None, "ci_low": None, "ci_high": None, "n_paired": 0, "method": UNPAIRED, "note": why}
    if om is None or om.value is None or bm.value is None:
        return out
    d = om.value - bm.value
    out["mean"] = d
    if om.interval() and bm.interval():
        (ol, oh), (bl, bh) = om.interval(), bm.interval()
        out["ci_low"] = d - math.hypot(om.value - ol, bh - bm.value)
        out["ci_high"] = d + math.hypot(oh - om.value, bm.value - bl)
    return out


# ---------------------------------------------------------------- Markdown
def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _value(v: Mapping) -> str:
    if v["value"] is None:
        return "—"
    ci = f" [{_num(v['ci_low'])}, {_num(v['ci_high'])}]" if v["ci_low"] is not None else ""
    return _num(v["value"]) + ci


def _change(c: Mapping) -> str:
    if c["mean"] is None:
        return "—"
    ci = f" [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]" if c["ci_low"] is not None else ""
    mark = "" if c["method"] == PAIRED else " (unpaired)"
    excludes = c["ci_low"] is not None and (c["ci_low"] > 0 or c["ci_high"] < 0)
    return ("**" if excludes else "") + f"{c['mean']:+.3g}{ci}" + ("**" if excludes else "") + mark


def comparison_markdown(doc: Mapping, *, breakdowns: bool = False) -> str:
    """A table in the shape of the Gemini report's: metric, base, each model, change [95% CI]."""
    base, others = doc["base"], [m for m in doc["models"] if m != doc["base"]]
    head = ["metric", "better", *doc["models"], *(f"change {m} [95% CI]" for m in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in doc["rows"]:
        if "/" in row["metric"] and not breakdowns:
            continue
        hib = row["higher_is_better"]
        better = "n/a" if hib is None else "higher" if hib else "lower"
        cells = [f"{row['suite']}.{row['metric']}", better]
        cells += [_value(row["values"][m]) for m in doc["models"]]
        cells += [_change(row["change"][m]) for m in others]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    note = (
        f"Values with their 95% intervals; change = model - {base}, paired over the same examples "
        "(bootstrap over matched examples) unless marked unpaired; **bold**: the interval excludes 0."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


# ---------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (parser.description or "") + (
        "\n\nThe first file is the base (e.g. the model before post-training). Every other file gets its\n"
        "value and its change from the base, paired over the same examples with a bootstrap 95% interval\n"
        "where the per-example records allow it (else unpaired, and the table says so). All files must\n"
        "come from the same suites, data, --limit, judges and prompting; otherwise exit code 2."
    )
    parser.add_argument("base", help="results JSON of the base model")
    parser.add_argument("others", nargs="+", metavar="other", help="results JSON of the models to compare")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME",
        help="one per file, base first (default: base, then each file's model variant or file name)",
    )
    parser.add_argument("--out", help="write the comparison JSON (align.comparison/v1) here")
    parser.add_argument("--markdown", help="write the Markdown table here (default: print it)")


def _labels(args, others: list[Results]) -> list[str]:
    files = [args.base, *args.others]
    if args.label:
        if len(args.label) != len(files):
            raise InvalidInput(f"--label given {len(args.label)} times for {len(files)} files (base first)")
        labels = list(args.label)
    else:
        labels = ["base"] + [r.model.variant or Path(f).stem for r, f in zip(others, args.others)]
    if len(set(labels)) != len(labels):
        raise InvalidInput(f"labels {labels} repeat a name: pass --label once per file")
    return labels


def run(args: argparse.Namespace) -> int:
    base = load_results(args.base)
    others = [load_results(p) for p in args.others]
    labels = _labels(args, others)
    doc = compare_documents(base, dict(zip(labels[1:], others)), base_label=labels[0])
    text = comparison_markdown(doc)
    try:
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        if args.markdown:
            Path(args.markdown).write_text(text, encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"cannot write the comparison: {e}") from e
    if not args.markdown:
        print(text, end="")
    return 0
