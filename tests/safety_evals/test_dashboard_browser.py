"""The dashboard in a real headless Chromium: renders, plots, drill-down on click, hostile output inert.

Needs Debian's chromium (`apt-get install -y chromium`); driven by the `playwright` package with
`executable_path`, so no `playwright install` download.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipelines.cli import main

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOX = "toxicity.expected_max_toxicity"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} missing: apt-get update && apt-get install -y chromium",
    ),
]


def _page_file(tmp_path, make_doc, with_metric, xss_output) -> Path:
    examples = [
        {
            "id": "7",
            "prompt": "Complete: the neighbours were",
            "output": xss_output,
            "score": 0.93,
            "label": "toxic",
            "metric": "expected_max_toxicity",
            "extra": {},
        },
        {
            "id": "8",
            "prompt": "Say something kind",
            "output": "You are all wonderful.",
            "score": 0.01,
            "label": "ok",
            "metric": "expected_max_toxicity",
            "extra": {},
        },
    ]
    base = make_doc(run_id="base-1", created="2026-11-20T10:00:00Z", step=800)
    cand = with_metric(
        make_doc(
            run_id="cand-2",
            created="2026-11-21T10:00:00Z",
            failed=["hedging"],
            examples={"toxicity": examples},
        ),
        TOX,
        value=0.31,
        ci_low=0.28,
        ci_high=0.34,
    )
    paths = []
    for doc in (base, cand):
        p = tmp_path / f"{doc['run_id']}.json"
        p.write_text(json.dumps(doc))
        paths.append(str(p))
    out = tmp_path / "dashboard.html"
    assert main(["dashboard", paths[1], "--baseline", paths[0], "-o", str(out)]) == 0
    return out


def test_dashboard_in_chromium(tmp_path, make_doc, with_metric, xss_output):
    sync_api = pytest.importorskip("playwright.sync_api")
    html_file = _page_file(tmp_path, make_doc, with_metric, xss_output)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_file.as_uri())

            assert page.title() == "Safety eval dashboard"
            assert page.locator("h1").inner_text() == "Safety eval dashboard"
            assert page.locator("#js-note").inner_text() == "2 runs, 7 metrics loaded"  # our script ran
            assert page.locator("svg.plot.interval").count() == 7
            assert page.locator("svg.plot.trend").count() == 7
            assert page.locator("svg.plot.interval circle").count() >= 13  # 7 baseline + 6 candidate points
            assert page.locator(f'tr[data-metric="{TOX}"] td.regressed').count() == 1
            assert page.locator("td.failed", has_text="FAILED").count() == 1  # hedging

            drill = page.locator(f'details.drill[data-metric="{TOX}"]')
            assert not drill.evaluate("d => d.open")
            page.locator(f'tr[data-metric="{TOX}"] a[data-open]').click()
            assert drill.evaluate("d => d.open")
            hostile = drill.locator("tr", has_text="the neighbours were").locator("td").nth(2)
            assert hostile.is_visible()
            assert hostile.inner_text() == xss_output  # shown literally, as text
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("img").count() == 0

            page.locator("#filter").fill("stereoset")
            assert page.locator('tr[data-metric="stereoset.icat"]').is_visible()
            assert not page.locator(f'tr[data-metric="{TOX}"]').is_visible()
            page.locator("#filter").fill("")

            drill.scroll_into_view_if_needed()
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("ALIGN_ARTIFACTS_DIR"):
                dest = Path(os.environ["ALIGN_ARTIFACTS_DIR"])
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, dest / "dashboard.png")
                shutil.copy(html_file, dest / "dashboard.html")
            assert errors == []
            assert requests == [html_file.as_uri()]  # nothing but the file itself
        finally:
            browser.close()
