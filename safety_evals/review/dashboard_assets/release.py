"""The dashboard's first screen: the release verdict per variant (gate verdict.json files), then the
post-training effect (an `align.comparison/v1` document: each metric for the base model, every stage
and variant, and the paired change from the base with its interval), in the shape of the Gemini 1.0
report's before/after table. Every text from a document goes through `esc`.
"""

from __future__ import annotations

from safety_evals.review.dashboard_assets.svg import esc
from safety_evals.review.dashboard_view import View, effect_state
from safety_evals.review.release_docs import UNPAIRED, ComparisonDoc, Estimate, Verdict

MAX_FAILED_SHOWN = 10  # failed checks listed per variant; the rest are in its verdict.json


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _estimate(e: Estimate | None, signed: bool = False) -> str:
    if e is None or e.value is None:
        return "—"
    value = f"{e.value:+.3g}" if signed else _num(e.value)
    if e.ci_low is not None and e.ci_high is not None:
        value += f" [{_num(e.ci_low)}, {_num(e.ci_high)}]"
    return value + (" (unpaired)" if e.method == UNPAIRED else "")


def _verdict_card(v: Verdict) -> str:
    word, cls = ("PASS", "good") if v.passed else ("FAIL", "bad")
    return (
        f'<div class="card verdict {cls}" data-variant="{esc(v.variant)}"><b>{word}</b>'
        f'{esc(v.variant)}<br><span class="muted">{v.failed} of {len(v.checks)} checks failed</span></div>'
    )


def _failed_checks(verdicts: list[Verdict]) -> str:
    rows = [
        f"<tr><td>{esc(v.variant)}</td><td><code>{esc(c.name)}</code></td><td>{esc(c.message)}</td></tr>"
        for v in verdicts
        for c in [c for c in v.checks if c.status == "fail"][:MAX_FAILED_SHOWN]
    ]
    if not rows:
        return ""
    return (
        '<table class="failed-checks"><tr><th>variant</th><th>failed check</th><th>why</th></tr>'
        f"{''.join(rows)}</table>"
    )


def verdict_section(view: View) -> str:
    head = '<h2 id="verdict">Release verdict</h2>'
    if not view.verdicts:
        return head + (
            '<p class="muted">No gate verdicts given (--verdict FILE or --run-dir DIR with '
            "gate/&lt;variant&gt;/verdict.json).</p>"
        )
    verdicts = [view.verdicts[k] for k in sorted(view.verdicts)]
    cards = "".join(_verdict_card(v) for v in verdicts)
    return f'{head}<div class="banner verdicts">{cards}</div>{_failed_checks(verdicts)}'


def _effect_head(c: ComparisonDoc, others: list[str]) -> str:
    cols = "".join(f"<th>{esc(m)}</th><th>Δ {esc(m)} vs base</th>" for m in others)
    base = esc(c.base) if c.base == "base" else f"{esc(c.base)} (base)"
    return f"<tr><th>metric</th><th>{base}</th>{cols}</tr>"


def _effect_table(c: ComparisonDoc) -> str:
    """Headline metrics in the table; breakdowns (`metric/group`) folded below it."""
    others = [m for m in c.models if m != c.base]
    head = _effect_head(c, others)
    top = [r for r in c.rows if "/" not in r.metric]
    parts = [r for r in c.rows if "/" in r.metric]
    out = f'<table class="effect">{head}{_effect_rows(c, top, others)}</table>'
    if parts:
        out += (
            f'<details class="drill breakdowns"><summary>{len(parts)} breakdowns by group</summary>'
            f'<table class="effect">{head}{_effect_rows(c, parts, others)}</table></details>'
        )
    return out


def _effect_rows(c: ComparisonDoc, rows_in: list, others: list[str]) -> str:
    rows = []
    for row in rows_in:
        arrow = {True: "↑ better", False: "↓ better"}.get(row.higher_is_better, "")
        cells = [f'<td class="num">{esc(_estimate(row.values.get(c.base)))}</td>']
        for m in others:
            state, change = effect_state(row, m), row.change.get(m)
            title = esc(f"{change.n} paired examples, {change.method or 'paired'}") if change else ""
            cells.append(f'<td class="num">{esc(_estimate(row.values.get(m)))}</td>')
            cells.append(
                f'<td class="num {state}" title="{title}">{esc(_estimate(change, signed=True))}</td>'
            )
        rows.append(
            f'<tr data-effect="{esc(row.full_name)}"><th title="{esc(row.description)}">'
            f'<code>{esc(row.full_name)}</code> <span class="muted">{esc(arrow)}</span></th>'
            f"{''.join(cells)}</tr>"
        )
    return "".join(rows)


def effect_section(view: View) -> str:
    head = '<h2 id="effect">Post-training effect</h2>'
    if not view.comparisons:
        return head + (
            '<p class="muted">No before/after comparison given (--comparison FILE or --run-dir DIR with '
            "compare/comparison.json).</p>"
        )
    note = (
        '<p class="muted">Value [95% interval] per model on the same examples and judges; Δ: paired change '
        "from the base with its 95% paired interval, green or red where that interval excludes zero in the "
        "metric's good or bad direction; (unpaired): the examples could not be paired and the interval "
        "combines the two models' own intervals.</p>"
    )
    tables = [
        (f"<h3>{esc(name)}</h3>" if name else "") + _effect_table(c) for name, c in view.comparisons.items()
    ]
    return head + note + "".join(tables)
