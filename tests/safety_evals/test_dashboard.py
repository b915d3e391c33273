"""`align dashboard`: escaping of untrusted text, regression highlighting, failed suites, worst examples."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from pipelines.cli import main
from safety_evals.review import dashboard, history
from safety_evals.review.dashboard_assets import sections
from safety_evals.review.dashboard_assets.svg import nice_ticks
from safety_evals.review.policy import load_policy
from safety_evals.review.documents import Example, MetricReading, from_json
from tests.paths import CONFIGS

TOX = "toxicity.expected_max_toxicity"


class _Cells(HTMLParser):
    """Collects the class of every <td> in the table row of each data-metric <tr>, and all script blocks."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.scripts: list[tuple[dict, str]] = []
        self._row = None
        self._script = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-metric" in a:
            self._row = self.rows.setdefault(a["data-metric"], [])
        elif tag == "td" and self._row is not None:
            self._row.append(a.get("class", ""))
        elif tag == "script":
            self._script = (a, "")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        elif tag == "script":
            self.scripts.append(self._script)
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script = (self._script[0], self._script[1] + data)


def _parse(html_text: str) -> _Cells:
    p = _Cells()
    p.feed(html_text)
    return p


def _docs(make_doc, with_metric, cand_tox=(0.31, 0.28, 0.34), **cand_kw):
    base = from_json(make_doc(run_id="base", created="2026-11-20T10:00:00Z", step=800), "base.json")
    lo_hi = dict(value=cand_tox[0], ci_low=cand_tox[1], ci_high=cand_tox[2])
    cand_doc = with_metric(make_doc(run_id="cand", created="2026-11-21T10:00:00Z", **cand_kw), TOX, **lo_hi)
    return base, from_json(cand_doc, "cand.json")


def test_significant_regression_is_highlighted(make_doc, with_metric):
    base, cand = _docs(make_doc, with_metric)  # 0.31 [0.28, 0.34] vs 0.20: whole interval above
    view = dashboard.build_view([cand], [], base, None)
    assert view.cells[("cand", TOX)].state == "regressed"
    assert view.cells[("base", TOX)].state == "baseline"
    assert view.cells[("cand", "stereoset.icat")].state == "same"  # identical values
    page = dashboard.render(view)
    assert _parse(page).rows[TOX] == ["num baseline", "num regressed"]  # columns: baseline first
    assert page.count('class="num regressed"') == 1
    assert "<b>1</b>significant regressions" in page


def test_insignificant_change_and_policy_tolerance(make_doc, with_metric):
    # worse point 0.24, interval [0.21, 0.28]: beyond 0.20 with tolerance 0, not beyond 0.20 + 0.03
    base, cand = _docs(make_doc, with_metric, cand_tox=(0.24, 0.21, 0.28))
    assert dashboard.build_view([cand], [], base, None).cells[("cand", TOX)].state == "regressed"
    policy = load_policy(CONFIGS / "gates" / "release.yaml")  # regression: 0.03 for this metric
    assert dashboard.build_view([cand], [], base, policy).cells[("cand", TOX)].state == "same"
    better, cand2 = _docs(make_doc, with_metric, cand_tox=(0.10, 0.08, 0.12))
    assert dashboard.build_view([cand2], [], better, None).cells[("cand", TOX)].state == "improved"
    assert dashboard.build_view([cand2], [], None, None).cells[("cand", TOX)].state == "same"


def test_failed_suite_shown_as_failed(make_doc, with_metric):
    base, cand = _docs(make_doc, with_metric, failed=["hedging"])
    page = dashboard.render(dashboard.build_view([cand], [], base, None))
    assert _parse(page).rows["hedging.hedging_balanced_accuracy"] == ["num baseline", "failed"]
    assert '<td class="failed">FAILED</td>' in page
    # the error text is untrusted too: escaped inside the failure box
    assert "hedging exploded\nTraceback tail &lt;b&gt;here&lt;/b&gt;</pre>" in page
    assert "suite failed" in page  # the interval plot says why the point is absent


def test_step_is_printed_as_an_integer(make_doc):
    run = from_json(make_doc(run_id="r", step=12345), "r.json")
    page = dashboard.render(dashboard.build_view([run], [], None, None))
    assert '<td class="num">12345</td>' in page and "1.234e+04" not in page
    assert sections._num(0.123456) == "0.1235" and sections._num(None) == "—"


def test_untrusted_text_is_escaped_everywhere(make_doc, with_metric, xss_output):
    evil = '"><script>window.__pwned=3</script>'
    doc = make_doc(
        run_id=f"r{evil}",
        name=f"m{evil}",
        variant=f"v{evil}",
        examples={
            "toxicity": [
                {
                    "id": f"i{evil}",
                    "prompt": xss_output,
                    "output": xss_output,
                    "score": 0.9,
                    "label": evil,
                    "metric": "expected_max_toxicity",
                    "extra": {},
                }
            ]
        },
    )
    doc["suites"]["toxicity"]["metrics"][f"x{evil}"] = {
        "value": 1.0,
        "ci_low": 0.5,
        "ci_high": 1.5,
        "n": 3,
        "higher_is_better": False,
    }
    page = dashboard.render(dashboard.build_view([from_json(doc, "evil.json")], [], None, None))
    assert "window.__pwned" in page  # the text is there ...
    assert "<script>window.__pwned" not in page and "<img" not in page  # ... but inert
    assert "&quot;&gt;&lt;script&gt;window.__pwned=3" in page
    assert (
        "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;"
    ) in page
    parsed = _parse(page)
    assert [a.get("type") for a, _ in parsed.scripts] == ["application/json", None]  # only ours
    data_text = parsed.scripts[0][1]
    assert not re.search(r"[<>&]", data_text)
    data = json.loads(data_text)
    assert data["runs"][0]["run_id"] == f"r{evil}" and f"toxicity.x{evil}" in data["metrics"]
    assert f"toxicity.x{evil}" in parsed.rows  # attribute value round-trips through the parser intact


def test_worst_examples_follow_direction():
    exs = [Example(str(i), "m", "p", "o", s, None) for i, s in enumerate([0.2, None, 0.9, -0.5, 0.4])]

    def ids(hib, target=None, k=10):
        m = MetricReading("s", "m", 0.0, None, None, 1, hib, target)
        return [e.id for e in dashboard.worst_examples(exs, m, k)]

    assert ids(False) == ["2", "4", "0", "3", "1"]  # highest score first, null last
    assert ids(True) == ["3", "0", "4", "2", "1"]
    assert ids(None, 0.3) == ["3", "2", "4", "0", "1"]  # |s - 0.3|: 0.8, 0.6, 0.1, 0.1 (stable)
    assert ids(False, k=2) == ["2", "4"]


def test_page_has_plots_and_drilldown(make_doc, with_metric):
    exs = [
        {
            "id": str(i),
            "prompt": f"p{i}",
            "output": f"out{i}",
            "score": s,
            "label": None,
            "metric": "expected_max_toxicity",
            "extra": {},
        }
        for i, s in enumerate([0.1, 0.7, 0.3])
    ]
    base, cand = _docs(make_doc, with_metric, examples={"toxicity": exs})
    page = dashboard.render(dashboard.build_view([cand], [], base, None), k=2)
    assert page.count('<svg class="plot interval"') == 7  # one forest plot per metric
    assert page.count('<svg class="plot trend"') == 7  # two runs: a trend per top-level metric
    drill = re.search(
        r'<details class="drill" id="(ex-[\w-]+)" '
        r'data-metric="toxicity.expected_max_toxicity">(.*?)</details>',
        page,
        re.S,
    )
    assert "2 worst of 3" in drill.group(2) and "(highest score first)" in drill.group(2)
    assert drill.group(2).index("out1") < drill.group(2).index("out2") and "out0" not in drill.group(2)
    assert f'data-open="{drill.group(1)}"' in page  # the metric cell links to it
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


def test_cli_with_history_and_baseline_run_id(tmp_path, make_doc, with_metric, write_doc, capsys):
    db = tmp_path / "h.sqlite"
    history.add_run(db, from_json(make_doc(run_id="old", created="2026-11-19T10:00:00Z"), "old.json"))
    cand = write_doc(
        with_metric(make_doc(run_id="new"), TOX, value=0.31, ci_low=0.28, ci_high=0.34), "new.json"
    )
    out = tmp_path / "d.html"
    assert main(["dashboard", str(cand), "--history", str(db), "--baseline", "old", "-o", str(out)]) == 0
    assert _parse(out.read_text()).rows[TOX] == ["num baseline", "num regressed"]
    assert main(["dashboard", str(cand), "--baseline", "nope", "-o", str(out)]) == 2
    assert "--baseline 'nope': neither a file nor a run_id" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 1,}')
    assert main(["dashboard", str(bad), "-o", str(out)]) == 2
    assert f"{bad}: invalid JSON at line 1 column 14" in capsys.readouterr().err


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.5, 1.0]  # raw step 0.25 -> 0.5
    assert nice_ticks(0.13, 0.41) == [0.2, 0.3, 0.4]  # raw 0.07 -> next of 0.01, 0.02, 0.05, 0.1 is 0.1
    assert nice_ticks(0.13, 0.29) == [0.15, 0.2, 0.25]  # raw 0.04 -> 0.05
    assert nice_ticks(47.0, 63.0) == [50.0, 55.0, 60.0]  # raw 4 -> 5


# ---------------------------------------------------------------- the release answer first


def test_labels_name_the_stage_not_the_path_and_no_unknown_step(make_doc):
    from safety_evals.review.labels import display_name

    assert display_name("runs/quickstart/rl/export") == "rl"
    assert display_name("/abs/models/gemma-3-270m-q4_k_m.gguf") == "gemma-3-270m-q4_k_m.gguf"
    assert display_name("google/gemma-3-270m") == "google/gemma-3-270m"  # a hub id stays
    assert display_name("gemma3-270m") == "gemma3-270m"
    runs = [
        from_json(make_doc(run_id="a", name="runs/q/sft/export", variant=None, step=None), "a.json"),
        from_json(make_doc(run_id="b", name="runs/q/rl/export", variant="chat", step=None), "b.json"),
        from_json(make_doc(run_id="c", name="runs/q/rl/export", variant="chat", step=40), "c.json"),
    ]
    assert dashboard.short_labels(runs) == {"a": "sft", "b": "rl · chat", "c": "rl · chat · step 40"}
    assert [r.label for r in runs] == ["sft", "rl · chat", "rl · chat · step 40"]
    page = dashboard.render(dashboard.build_view(runs, [], None, None))
    assert "step ?" not in page and "runs/q" not in page.split("<main>")[1].split("Runs</h2>")[0]


def test_effect_state_follows_the_paired_interval_and_the_metric_direction():
    from safety_evals.review.dashboard_view import effect_state
    from safety_evals.review.release_docs import ComparisonRow, Estimate

    def row(hib, lo, hi):
        change = {"m": Estimate((lo + hi) / 2, lo, hi, 50)}
        return ComparisonRow("s", "x", hib, "", {}, change)

    assert effect_state(row(True, 0.1, 0.3), "m") == "improved"
    assert effect_state(row(False, 0.1, 0.3), "m") == "regressed"  # up is bad for a lower-is-better metric
    assert effect_state(row(False, -0.3, -0.1), "m") == "improved"
    assert effect_state(row(True, -0.01, 0.3), "m") == "same"  # interval reaches zero
    assert effect_state(row(None, 0.1, 0.3), "m") == "same"  # closer-to-target: no sign says better
    assert effect_state(row(True, 0.1, 0.3), "other") == "same"


def test_run_dir_puts_verdicts_then_the_effect_table_before_the_detail(tmp_path, make_doc, xss_output):
    from tests.release_fixtures import comparison_doc, verdict_doc

    run = tmp_path / "run"
    (run / "evals").mkdir(parents=True)
    (run / "compare").mkdir()
    (run / "compare" / "comparison.json").write_text(json.dumps(comparison_doc()))
    (run / "evals" / "chat.json").write_text(json.dumps(make_doc(name="runs/q/rl/export", step=None)))
    (run / "evals" / "x.failed.json").write_text("not read")
    for variant, passed in (("chat", False), ("developer", True)):
        doc = verdict_doc(variant, passed)
        doc["checks"][-1]["message"] = xss_output
        (run / "gate" / variant).mkdir(parents=True)
        (run / "gate" / variant / "verdict.json").write_text(json.dumps(doc))
    out = tmp_path / "d.html"
    assert main(["dashboard", "--run-dir", str(run), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.index('id="verdict"') < page.index('id="effect"') < page.index('id="detail"')
    assert page.index('id="detail"') < page.index('id="metrics"')
    assert '<div class="card verdict bad" data-variant="chat"><b>FAIL</b>chat' in page
    assert '<div class="card verdict good" data-variant="developer"><b>PASS</b>developer' in page
    assert "<script>window.__pwned" not in page and "&lt;script&gt;window.__pwned=1" in page
    effect = page[page.index('id="effect"') : page.index('id="detail"')]
    assert effect.count('<tr data-effect="') == 3
    folded = effect.split('<details class="drill breakdowns">')[1]  # breakdowns below the headline table
    assert folded.startswith("<summary>1 breakdowns by group</summary>")
    assert '<tr data-effect="crows_pairs.pct_stereotype/gender">' in folded
    # up is bad for a lower-is-better metric: the breakdown's change is a significant regression
    assert (
        '<td class="num regressed" title="100 paired examples, paired bootstrap">+0.1 [0.05, 0.15]</td>'
        in folded
    )
    assert (
        '<td class="num improved" title="100 paired examples, paired bootstrap">+0.53 [0.43, 0.63]</td>'
        in effect
    )
    assert (
        '<td class="num same" title="100 paired examples, paired bootstrap">+0.03 [-0.02, 0.08]</td>'
        in effect
    )
    assert "<th>base</th><th>sft</th><th>Δ sft vs base</th><th>rl</th><th>Δ rl vs base</th>" in effect
    assert "step ?" not in page


def test_without_release_documents_the_page_says_what_to_pass(make_doc):
    page = dashboard.render(dashboard.build_view([from_json(make_doc(), "a.json")], [], None, None))
    assert "No gate verdicts given" in page and "No before/after comparison given" in page


def test_a_malformed_verdict_is_exit_2_naming_the_field(tmp_path, make_doc, write_doc, capsys):
    bad = tmp_path / "verdict.json"
    bad.write_text('{"variant": "chat", "passed": true, "failed": 0, "checks": [{"status": "pass"}]}')
    assert (
        main(["dashboard", str(write_doc(make_doc())), "--verdict", str(bad), "-o", str(tmp_path / "d")]) == 2
    )
    assert f"{bad}: checks[0].name: missing" in capsys.readouterr().err


def test_per_variant_comparisons_each_get_their_table(tmp_path, make_doc):
    """Variants prompted differently have their own base run, so the pipeline writes one comparison each."""
    from tests.release_fixtures import comparison_doc

    run = tmp_path / "run"
    for variant in ("chat", "developer"):
        doc = comparison_doc()
        doc["models"] = ["base", "sft", variant]
        for row in doc["rows"]:
            row["values"][variant] = row["values"].pop("rl")
            row["change"][variant] = row["change"].pop("rl")
        (run / "compare" / variant).mkdir(parents=True)
        (run / "compare" / variant / "comparison.json").write_text(json.dumps(doc))
    (run / "evals").mkdir()
    (run / "evals" / "chat.json").write_text(json.dumps(make_doc()))
    out = tmp_path / "d.html"
    assert main(["dashboard", "--run-dir", str(run), "-o", str(out)]) == 0
    effect = out.read_text().split('id="effect"')[1].split('id="detail"')[0]
    assert effect.count('<table class="effect">') == 4  # per variant: headline table + folded breakdowns
    assert effect.index("<h3>chat</h3>") < effect.index("<th>Δ chat vs base</th>")
    assert effect.index("<h3>developer</h3>") < effect.index("<th>Δ developer vs base</th>")
