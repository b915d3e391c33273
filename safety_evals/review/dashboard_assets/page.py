"""The dashboard's page shell: inline CSS and JS, a Content-Security-Policy, embedded JSON data.

Defence in depth for untrusted model outputs: the Python side escapes every text (`html.escape`,
attributes too); on top of that the CSP allows no network at all and only *our* script, by hash, so a
`<script>` that slipped through escaping would still not run. The JS reads data with `JSON.parse` from
a `<script type="application/json">` block and writes text with `textContent` only.
"""

from __future__ import annotations

import base64
import hashlib
import json

CSS = """
:root { --bad:#C62828; --good:#2E7D32; --muted:#607D8B; --line:#CFD8DC; --base:#6A1B9A; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color:#263238;
       background:#FAFAFA; }
header { background:#263238; color:#fff; padding:14px 24px; }
header h1 { margin:0; font-size:20px; } header .sub { color:#B0BEC5; font-size:12px; }
main { padding: 12px 24px 48px; max-width: 1500px; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 28px; }
h3 { margin: 18px 0 6px; }
.banner { display:flex; gap:12px; flex-wrap:wrap; margin:12px 0; }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:140px; }
.card b { display:block; font-size:22px; }
.card.bad b { color:var(--bad); } .card.good b { color:var(--good); }
.card.verdict { min-width:180px; border-width:2px; } .card.verdict b { font-size:28px; }
.card.verdict.bad { border-color:var(--bad); background:#FFF5F5; }
.card.verdict.good { border-color:var(--good); background:#F1F8E9; }
table { border-collapse: collapse; background:#fff; margin: 6px 0 10px; }
th, td { border:1px solid var(--line); padding:4px 8px; vertical-align: top; text-align:left; }
th { background:#ECEFF1; font-weight:600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.regressed { background:#FFEBEE; color:var(--bad); font-weight:600; }
td.improved { background:#E8F5E9; color:var(--good); }
td.failed, .tag.failed-tag { background:#C62828; color:#fff; font-weight:700; }
td.baseline { box-shadow: inset 3px 0 0 var(--base); }
.delta { display:block; font-size:11px; }
.tag { display:inline-block; font-size:11px; padding:0 6px; border-radius:8px; background:#ECEFF1;
       margin-left:4px; }
.tag.base { background:var(--base); color:#fff; }
.failbox { border:2px solid var(--bad); background:#FFF5F5; border-radius:6px; padding:8px 12px;
           margin:8px 0; }
pre, .text { white-space: pre-wrap; word-break: break-word;
             font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace;
             max-height: 14em; overflow:auto; margin:0; }
.plots { display:flex; flex-wrap:wrap; gap:10px; }
svg.plot { background:#fff; border:1px solid var(--line); border-radius:4px; }
svg .ptitle { font-size:12px; font-weight:600; fill:#263238; }
svg .tick, svg .rlabel, svg .note { font-size:10.5px; fill:#455A64; }
svg .note { fill:var(--bad); font-weight:600; }
svg .grid { stroke:#ECEFF1; } svg .base { stroke:var(--base); stroke-dasharray:4 3; stroke-width:1.5; }
svg .target { stroke:#9E9E9E; stroke-dasharray:1 3; stroke-width:1.5; }
details.drill { background:#fff; border:1px solid var(--line); border-radius:4px; margin:6px 0;
                 padding:4px 10px; }
details.drill > summary { cursor:pointer; font-weight:600; }
details.drill[open] { border-color:#90A4AE; }
details.drill table { width:100%; table-layout: fixed; }
details.drill col.c-id { width:6em; } details.drill col.c-score { width:7em; }
details.drill col.c-label { width:8em; }
a.ex { font-size:11px; color:#1565C0; cursor:pointer; }
#filter { padding:4px 8px; width: 320px; }
.muted { color: var(--muted); } .hidden { display:none !important; }
"""

JS = """
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('dashboard-data').textContent);
  function openDrill(id) {
    var el = document.getElementById(id);
    if (!el) return;
    var p = el;
    while (p) { if (p.tagName === 'DETAILS') p.open = true; p = p.parentElement; }
    el.scrollIntoView({block: 'start'});
  }
  document.addEventListener('click', function (ev) {
    var a = ev.target.closest ? ev.target.closest('a[data-open]') : null;
    if (!a) return;
    ev.preventDefault();
    openDrill(a.getAttribute('data-open'));
    history.replaceState(null, '', '#' + a.getAttribute('data-open'));
  });
  if (location.hash.length > 1) openDrill(location.hash.slice(1));
  var list = document.getElementById('metric-names');
  data.metrics.forEach(function (name) {
    var o = document.createElement('option'); o.value = name; list.appendChild(o);
  });
  var filter = document.getElementById('filter');
  filter.addEventListener('input', function () {
    var q = filter.value.trim().toLowerCase();
    document.querySelectorAll('[data-metric], [data-effect]').forEach(function (el) {
      var name = el.getAttribute('data-metric') || el.getAttribute('data-effect');
      el.classList.toggle('hidden', q !== '' && name.toLowerCase().indexOf(q) < 0);
    });
  });
  var note = document.getElementById('js-note');
  note.textContent = data.runs.length + ' runs, ' + data.metrics.length + ' metrics loaded';
})();
"""


def json_for_script(obj: object) -> str:
    """JSON safe inside <script type="application/json">: no `<`, `>` or `&` can close the element."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, sort_keys=True)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"


def page(title_html: str, subtitle_html: str, body_html: str, data: object) -> str:
    """The whole document; title/subtitle/body must already be escaped HTML."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title_html}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{title_html}</h1><div class="sub">{subtitle_html}</div></header><main>'
        '<p><input id="filter" type="search" list="metric-names" '
        'placeholder="filter metrics (e.g. toxicity)" '
        'aria-label="filter metrics"><datalist id="metric-names"></datalist> '
        '<span id="js-note" class="muted"></span></p>'
        f"{body_html}</main>"
        f'<script type="application/json" id="dashboard-data">{json_for_script(data)}</script>'
        f"<script>{JS}</script></body></html>\n"
    )
