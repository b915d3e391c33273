"""Model-card sections that state the pipeline's answer: the release gate's verdict, the before/after
table of the post-training (the shape of the Gemini 1.0 report's factuality table: metric, the base
model, each stage and variant, and the paired change from the base with its 95% interval), and where
the starting weights came from. Every text from a document goes through `cell` (Markdown-safe).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.release.provenance import Provenance
from safety_evals.review.release_docs import UNPAIRED, ComparisonDoc, ComparisonRow, Estimate, Verdict

MAX_FAILED_SHOWN = 10  # failed checks listed in the card; the rest are in verdict.json


def cell(x: Any) -> str:
    """A value safe inside a Markdown table cell (no pipes, no newlines, no raw HTML)."""
    text = "" if x is None else str(x)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", " ").strip()


def num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _interval(e: Estimate) -> str:
    return f"[{num(e.ci_low)}, {num(e.ci_high)}]" if e.ci_low is not None and e.ci_high is not None else ""


def _value(e: Estimate | None) -> str:
    if e is None or e.value is None:
        return "n/a"
    return f"{num(e.value)} {_interval(e)}".strip()


def _change(e: Estimate | None) -> str:
    """`+0.05 [0.01, 0.09]`, bold when the paired interval excludes zero."""
    if e is None or e.value is None:
        return "n/a"
    text = f"{e.value:+.4g} {_interval(e)}".strip()
    text = f"**{text}**" if e.excludes_zero() else text
    return text + (" (unpaired)" if e.method == UNPAIRED else "")


def _better(row: ComparisonRow) -> str:
    return {True: "higher", False: "lower"}.get(row.higher_is_better, "closer to target")


def before_after_section(comparison: ComparisonDoc) -> list[str]:
    """The post-training effect: one row per metric, each model's value and its change from the base."""
    others = [m for m in comparison.models if m != comparison.base]
    base = cell(comparison.base)
    head = ["metric", "better", base if base == "base" else f"{base} (base)"]
    for m in others:
        head += [cell(m), f"Δ {cell(m)} vs base"]
    out = [
        "## Post-training effect",
        "",
        f"Each model evaluated on the same examples with the same judges; Δ is the paired change from "
        f"`{cell(comparison.base)}` with its 95% paired bootstrap interval, **bold** where that interval "
        "excludes zero; (unpaired): examples could not be paired, so the interval combines the two "
        "models' own intervals (MOVER). Values are value [95% interval].",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in (r for r in comparison.rows if "/" not in r.metric):  # breakdowns: in comparison.json
        cells = [
            f"{cell(row.suite)}.{cell(row.metric)}",
            _better(row),
            _value(row.values.get(comparison.base)),
        ]
        for m in others:
            cells += [_value(row.values.get(m)), _change(row.change.get(m))]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def gate_section(verdicts: Mapping[str, Verdict], variant: str) -> list[str]:
    """This variant's release verdict (`align gate` under the pipeline's policy), failures first."""
    out = ["## Release gate", ""]
    verdict = verdicts.get(variant)
    if verdict is None:
        known = ", ".join(sorted(verdicts)) or "none"
        return out + [f"No gate verdict for variant `{cell(variant)}` (verdicts for: {cell(known)}).", ""]
    total = len(verdict.checks)
    if verdict.passed:
        out.append(f"**PASS**: variant `{cell(variant)}` passed all {total} checks of the release policy.")
    else:
        out.append(
            f"**FAIL**: {verdict.failed} of {total} checks of the release policy failed "
            f"for `{cell(variant)}`."
        )
    failed = [c for c in verdict.checks if c.status == "fail"]
    if failed:
        out += ["", "| failed check | why |", "|---|---|"]
        out += [f"| {cell(c.name)} | {cell(c.message)[:200]} |" for c in failed[:MAX_FAILED_SHOWN]]
        if len(failed) > MAX_FAILED_SHOWN:
            out.append(f"| … | {len(failed) - MAX_FAILED_SHOWN} more in verdict.json |")
    others = [
        f"{cell(v)}: {'PASS' if d.passed else 'FAIL'}" for v, d in sorted(verdicts.items()) if v != variant
    ]
    if others:
        out += ["", "Other variants of this run: " + ", ".join(others) + "."]
    return out + [""]


def provenance_section(prov: Provenance, export_dtype: str) -> list[str]:
    out = ["## Provenance", "", "| | |", "|---|---|"]
    out += [f"| {cell(k)} | {cell(v)} |" for k, v in prov.rows(export_dtype).items()]
    return out + [""]
