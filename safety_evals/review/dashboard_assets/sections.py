"""The dashboard's HTML sections, from a `View` (dashboard_view.py) to the whole page.

Model outputs are untrusted: every text goes through `esc` (html.escape, attributes too).
"""

from __future__ import annotations

import datetime as dt

from safety_evals.review.dashboard_assets.page import page
from safety_evals.review.dashboard_assets.release import effect_section, verdict_section
from safety_evals.review.dashboard_assets.svg import IntervalRow, TrendPoint, esc, interval_plot, trend_plot
from safety_evals.review.dashboard_view import (
    Cell,
    View,
    drill_ids,
    metric_anchors,
    worst_examples,
    worst_rule,
)
from safety_evals.review.documents import MetricReading, Results

MAX_TEXT = 4000  # characters of prompt/output shown per example; the rest is cut with a note


def _num(x: float | int | None) -> str:
    """Integers (steps, counts) in full: .4g prints step 12345 as 1.234e+04."""
    if x is None:
        return "—"
    return str(x) if isinstance(x, int) else f"{x:.4g}"


def _run_head(r: Results, baseline: Results | None) -> str:
    tag = '<span class="tag base">baseline</span>' if baseline and r.run_id == baseline.run_id else ""
    return (
        f'<th>{esc(r.label)}{tag}<br><span class="muted">{esc(r.run_id)}<br>'
        f"{r.created:%Y-%m-%d %H:%M}</span></th>"
    )


def _runs_table(view: View) -> str:
    rows = []
    for r in view.trend_runs:
        ok = sum(s.ok for s in r.suites.values())
        failed = [n for n, s in r.suites.items() if not s.ok]
        tag = (
            '<span class="tag base">baseline</span>'
            if view.baseline and r.run_id == view.baseline.run_id
            else ""
        )
        rows.append(
            f"<tr><td>{esc(r.run_id)}{tag}</td><td>{r.created:%Y-%m-%d %H:%M}</td>"
            f"<td>{esc(r.model.name)}</td>"
            f'<td>{esc(r.model.variant or "—")}</td><td class="num">{esc(_num(r.model.step))}</td>'
            f'<td><code>{esc((r.model.sha256 or "—")[:12])}</code></td><td class="num">{ok}</td>'
            f'<td class="{"failed" if failed else ""}">{esc(", ".join(failed) or "0")}</td></tr>'
        )
    head = (
        "<tr><th>run</th><th>created (UTC)</th><th>model</th><th>variant</th><th>step</th>"
        "<th>weights sha256</th><th>suites ok</th><th>suites failed</th></tr>"
    )
    return f'<h2 id="runs">Runs</h2><table>{head}{"".join(rows)}</table>'


def _banner(view: View) -> str:
    cells = list(view.cells.values())
    reg = [(rid, name, c) for (rid, name), c in view.cells.items() if c.state == "regressed"]
    n_failed = sum(not s.ok for r in view.columns for s in r.suites.values())
    cards = [
        ("runs", len(view.trend_runs), ""),
        ("metrics", sum(len(v) for v in view.suites.values()), ""),
        ("significant regressions", len(reg), "bad" if reg else "good"),
        ("significant improvements", sum(c.state == "improved" for c in cells), ""),
        ("failed suites", n_failed, "bad" if n_failed else "good"),
    ]
    out = (
        ['<div class="banner">']
        + [f'<div class="card {cls}"><b>{n}</b>{esc(label)}</div>' for label, n, cls in cards]
        + ["</div>"]
    )
    if view.baseline is None:
        out.append(
            '<p class="muted">No baseline chosen (--baseline FILE_OR_RUN_ID): no regression highlighting.</p>'
        )
    if reg:
        runs = {r.run_id: r for r in view.columns}
        anchors = metric_anchors(view)
        rows = "".join(
            f"<tr><td>{esc(runs[rid].label)}</td>"
            f'<td><a href="#{anchors[name]}"><code>{esc(name)}</code></a></td>'
            f"<td>{esc(c.comparison.text)}</td></tr>"
            for rid, name, c in reg
        )
        out.append(
            f'<h3>Significant regressions vs baseline</h3><table class="regressions">'
            f"<tr><th>run</th><th>metric</th><th>comparison</th></tr>{rows}</table>"
        )
    return "".join(out)


def _failed_suites(view: View) -> str:
    boxes = [
        f'<div class="failbox"><span class="tag failed-tag">FAILED</span> <b>{esc(n)}</b> in '
        f'{esc(r.label)} <span class="muted">({esc(r.run_id)})</span>'
        f"<pre>{esc(s.error or 'no error recorded')}</pre></div>"
        for r in view.columns
        for n, s in r.suites.items()
        if not s.ok
    ]
    return '<h2 id="failed">Failed suites</h2>' + ("".join(boxes) or '<p class="muted">None.</p>')


def _value_cell(c: Cell, drill_id: str | None) -> str:
    if c.state == "failed":
        return '<td class="failed">FAILED</td>'
    if c.metric is None or c.metric.value is None:
        return '<td class="num muted">—</td>'
    m, iv = c.metric, c.metric.interval()
    text = _num(m.value) + (f" [{_num(iv[0])}, {_num(iv[1])}]" if iv else "")
    delta = f'<span class="delta">Δ {c.comparison.delta:+.3g}</span>' if c.comparison else ""
    link = f' <a class="ex" href="#{drill_id}" data-open="{drill_id}">examples ▸</a>' if drill_id else ""
    title = esc(c.comparison.text) if c.comparison else ""
    return f'<td class="num {c.state}" title="{title}">{esc(text)}{delta}{link}</td>'


def _metric_tables(view: View, ids: dict) -> str:
    out = ['<h2 id="metrics">Metrics: value [95% interval] per run</h2>']
    anchors = metric_anchors(view)
    heads = "".join(_run_head(r, view.baseline) for r in view.columns)
    for sname, names in view.suites.items():
        rows, plots = [], []
        for name in names:
            full = f"{sname}.{name}"
            meta = next(
                (
                    view.cells[(r.run_id, full)].metric
                    for r in view.columns
                    if view.cells[(r.run_id, full)].metric
                ),
                None,
            )
            arrow = {True: "↑ better", False: "↓ better"}.get(
                meta.higher_is_better if meta else None,
                f"→ {meta.target:g}" if meta and meta.target is not None else "",
            )
            tds = "".join(
                _value_cell(view.cells[(r.run_id, full)], ids.get((r.run_id, full))) for r in view.columns
            )
            desc = esc(meta.description if meta else "")
            rows.append(
                f'<tr id="{anchors[full]}" data-metric="{esc(full)}">'
                f'<th title="{desc}"><code>{esc(name)}</code> '
                f'<span class="muted">{esc(arrow)}</span></th>{tds}</tr>'
            )
            plots.append(f'<div data-metric="{esc(full)}">{_interval_svg(view, full, meta)}</div>')
        out.append(
            f'<h3 id="suite-{len(out)}">{esc(sname)}</h3>'
            f"<table><tr><th>metric</th>{heads}</tr>{''.join(rows)}</table>"
            f'<div class="plots">{"".join(plots)}</div>'
        )
    return "".join(out)


def _interval_svg(view: View, full: str, meta: MetricReading | None) -> str:
    rows = []
    for r in view.columns:
        c = view.cells[(r.run_id, full)]
        m = c.metric
        iv = m.interval() if m else None
        rows.append(
            IntervalRow(
                view.labels[r.run_id],
                m.value if m else None,
                iv[0] if iv else None,
                iv[1] if iv else None,
                c.state,
                "suite failed" if c.state == "failed" else "",
            )
        )
    bm = view.baseline.metrics().get(full) if view.baseline else None
    return interval_plot(full, rows, bm.value if bm else None, meta.target if meta else None)


def _trends(view: View) -> str:
    out = ['<h2 id="trends">Trends over time</h2>']
    if len(view.trend_runs) < 2:
        return out[0] + (
            '<p class="muted">Needs at least two runs (pass more files or --history results.sqlite).</p>'
        )
    plots, one_model = [], len({r.model.name for r in view.trend_runs}) == 1
    for sname, names in view.suites.items():
        for name in (n for n in names if "/" not in n):  # breakdowns stay in the tables
            full = f"{sname}.{name}"
            series: dict[str, list[TrendPoint]] = {}
            for r in view.trend_runs:
                m = r.metrics().get(full)
                if m is not None and m.value is not None:
                    iv = m.interval() or (None, None)
                    key = " · ".join(x for x in (None if one_model else r.model.name, r.model.variant) if x)
                    series.setdefault(key, []).append(TrendPoint(r.created, m.value, iv[0], iv[1], r.label))
            bm = view.baseline.metrics().get(full) if view.baseline else None
            if series:
                plots.append(
                    f'<div data-metric="{esc(full)}">'
                    f"{trend_plot(full, series, bm.value if bm else None)}</div>"
                )
    return out[0] + f'<div class="plots">{"".join(plots)}</div>'


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"\n… [cut: {len(text)} characters in all]"


def _drilldown(view: View, ids: dict, k: int) -> str:
    out = ['<h2 id="examples">Worst examples per metric</h2>']
    for r in view.drill:
        out.append(f'<h3>{esc(r.label)} <span class="muted">{esc(r.run_id)}</span></h3>')
        for sname, s in r.suites.items():
            for key in sorted({e.metric or "*" for e in s.examples}):
                exs = [e for e in s.examples if (e.metric or "*") == key]
                meta = s.metrics.get(key)
                worst = worst_examples(exs, meta, k)
                rows = "".join(
                    f'<tr><td>{esc(e.id)}</td><td><div class="text">{esc(_clip(e.prompt))}</div></td>'
                    f'<td><div class="text">{esc(_clip(e.output))}</div></td>'
                    f'<td class="num">{_num(e.score)}</td>'
                    f"<td>{esc(e.label or '')}</td></tr>"
                    for e in worst
                )
                name = f"{sname}.{key}" if key != "*" else f"{sname} (examples without a metric)"
                out.append(
                    f'<details class="drill" id="{ids[(r.run_id, f"{sname}.{key}")]}" '
                    f'data-metric="{esc(name)}">'
                    f"<summary><code>{esc(name)}</code>: {len(worst)} worst of {len(exs)} "
                    f'<span class="muted">({esc(worst_rule(meta))})</span></summary>'
                    '<table><colgroup><col class="c-id"><col><col><col class="c-score">'
                    '<col class="c-label"></colgroup>'
                    "<tr><th>id</th><th>prompt</th><th>output</th><th>score</th><th>label</th></tr>"
                    f"{rows}</table></details>"
                )
    return "".join(out)


def render(view: View, k: int = 10) -> str:
    """The whole page as a string."""
    ids = drill_ids(view)
    body = (
        verdict_section(view)
        + effect_section(view)
        + '<h2 id="detail">Per-suite detail</h2>'
        + _banner(view)
        + _runs_table(view)
        + _failed_suites(view)
        + _metric_tables(view, ids)
        + _trends(view)
        + _drilldown(view, ids, k)
    )
    now = dt.datetime.now(dt.timezone.utc)
    base = (
        f"baseline {esc(view.baseline.label)} ({esc(view.baseline.run_id)})"
        if view.baseline
        else "no baseline"
    )
    sub = f"generated {now:%Y-%m-%d %H:%M} UTC · {len(view.trend_runs)} runs · {base}"
    data = {
        "runs": [
            {"run_id": r.run_id, "label": r.label, "created": r.created.isoformat()} for r in view.trend_runs
        ],
        "baseline": view.baseline.run_id if view.baseline else None,
        "metrics": [f"{s}.{m}" for s, names in view.suites.items() for m in names],
        "regressions": [[rid, name] for (rid, name), c in view.cells.items() if c.state == "regressed"],
        "verdicts": {k: v.passed for k, v in view.verdicts.items()},
    }
    return page("Safety eval dashboard", sub, body, data)
