"""Inline SVG plots for the dashboard, drawn in Python so the page needs no library or network.

Every text that can come from a results file (run labels, metric names) goes through `esc`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import math

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
STATE_COLOUR = {"regressed": "#C62828", "improved": "#2E7D32", "same": "#37474F", "baseline": "#6A1B9A"}


def esc(s: object) -> str:
    """Escape text and attribute values alike (quotes included)."""
    return html.escape(str(s), quote=True)


@dataclasses.dataclass(frozen=True)
class IntervalRow:
    label: str
    value: float | None  # None: suite failed or metric missing
    lo: float | None
    hi: float | None
    state: str = "same"  # regressed | improved | same | baseline
    note: str = ""  # shown instead of a point, e.g. "suite failed"


@dataclasses.dataclass(frozen=True)
class TrendPoint:
    when: dt.datetime
    value: float
    lo: float | None
    hi: float | None
    label: str


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    span = hi - lo
    raw = span / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _extent(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def interval_plot(title: str, rows: list[IntervalRow], baseline: float | None, target: float | None) -> str:
    """Forest plot: one row per run, point estimate and 95% interval, baseline and target lines."""
    left, _right, top, row_h = 200, 16, 24, 20
    width, plot_w = 500, 500 - 200 - 16
    height = top + row_h * max(len(rows), 1) + 26
    xs = [v for r in rows for v in (r.value, r.lo, r.hi) if v is not None]
    xs += [v for v in (baseline, target) if v is not None]
    if not xs:
        xs = [0.0, 1.0]
    x0, x1 = _extent(xs)

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * plot_w

    out = [
        f'<svg class="plot interval" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{esc(title)}: 95% intervals</title>',
        f'<text x="4" y="14" class="ptitle">{esc(_short(title, 60))}</text>',
    ]
    axis_y = top + row_h * max(len(rows), 1)
    for t in nice_ticks(x0, x1):
        out.append(
            f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{axis_y}" class="grid"/>'
            f'<text x="{sx(t):.1f}" y="{axis_y + 14}" class="tick" text-anchor="middle">{t:g}</text>'
        )
    for value, cls, name in ((target, "target", "target"), (baseline, "base", "baseline")):
        if value is not None:
            out.append(
                f'<line x1="{sx(value):.1f}" x2="{sx(value):.1f}" y1="{top - 6}" y2="{axis_y}" '
                f'class="{cls}"><title>{name} {value:.4g}</title></line>'
            )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="rlabel" text-anchor="end">'
            f"<title>{esc(r.label)}</title>{esc(_short(r.label, 32))}</text>"
        )
        if r.value is None:
            out.append(f'<text x="{left + 4}" y="{y + 4:.1f}" class="note">{esc(r.note or "missing")}</text>')
            continue
        colour = STATE_COLOUR.get(r.state, STATE_COLOUR["same"])
        tip = f"{r.label}: {r.value:.4g}" + (f" [{r.lo:.4g}, {r.hi:.4g}]" if r.lo is not None else "")
        if r.lo is not None and r.hi is not None:
            out.append(
                f'<line x1="{sx(r.lo):.1f}" x2="{sx(r.hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="2.5"/>'
            )
        out.append(
            f'<circle cx="{sx(r.value):.1f}" cy="{y:.1f}" r="4" fill="{colour}" '
            f'class="pt-{esc(r.state)}"><title>{esc(tip)}</title></circle>'
        )
    out.append("</svg>")
    return "".join(out)


def trend_plot(title: str, series: dict[str, list[TrendPoint]], baseline: float | None) -> str:
    """Value over time per series (model · variant): error bars for intervals, a line through points."""
    left, right, top, bottom, width, height = 56, 150, 24, 34, 620, 210
    plot_w, plot_h = width - left - right, height - top - bottom
    pts = [p for s in series.values() for p in s]
    ys = [v for p in pts for v in (p.value, p.lo, p.hi) if v is not None] + (
        [baseline] if baseline is not None else []
    )
    y0, y1 = _extent(ys or [0.0, 1.0])
    times = [p.when.timestamp() for p in pts] or [0.0]
    t0, t1 = _extent(times)

    def sx(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    def sy(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * plot_h

    out = [
        f'<svg class="plot trend" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{esc(title)}: over time</title>',
        f'<text x="4" y="14" class="ptitle">{esc(_short(title, 70))}</text>',
    ]
    for v in nice_ticks(y0, y1):
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>'
        )
    last_x = -1e9
    for t in sorted({p.when.timestamp() for p in pts}):
        if sx(t) - last_x < 80:  # labels are ~70 px wide: skip the ones that would overlap
            continue
        last_x = sx(t)
        day = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%m-%d %H:%M")
        out.append(
            f'<text x="{sx(t):.1f}" y="{top + plot_h + 14}" class="tick" text-anchor="middle">{day}</text>'
        )
    if baseline is not None:
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(baseline):.1f}" y2="{sy(baseline):.1f}" '
            f'class="base"><title>baseline {baseline:.4g}</title></line>'
        )
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = sorted(points, key=lambda p: p.when)
        path = " ".join(f"{sx(p.when.timestamp()):.1f},{sy(p.value):.1f}" for p in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for p in points:
            x = sx(p.when.timestamp())
            if p.lo is not None and p.hi is not None:
                out.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{sy(p.lo):.1f}" y2="{sy(p.hi):.1f}" '
                    f'stroke="{colour}" stroke-width="1.5"/>'
                )
            tip = f"{p.label}: {p.value:.4g}" + (f" [{p.lo:.4g}, {p.hi:.4g}]" if p.lo is not None else "")
            out.append(
                f'<circle cx="{x:.1f}" cy="{sy(p.value):.1f}" r="3.5" fill="{colour}">'
                f"<title>{esc(tip)}</title></circle>"
            )
        ly = top + 12 + 16 * i
        out.append(
            f'<rect x="{width - right + 10}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{width - right + 24}" y="{ly + 1}" class="tick"><title>{esc(name)}</title>'
            f"{esc(_short(name, 20))}</text>"
        )
    out.append("</svg>")
    return "".join(out)
