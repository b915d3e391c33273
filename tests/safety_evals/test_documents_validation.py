"""The one validating reader behind gate, dashboard, history and cards (issue 32): duplicate keys,
documents that contradict themselves, directions taken from the document, extreme numbers. Each is
unusable input: exit 2 and one line naming the file and the JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from safety_evals.review.documents import ResultsError, from_json, load_results, parse_results
from tests.safety_evals.conftest import make_doc, with_metric

RELEASE = str(Path(__file__).resolve().parents[2] / "configs" / "gates" / "release.yaml")
TOX = "toxicity.expected_max_toxicity"


def _write(tmp_path, text: str, name="r.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _readers(tmp_path, path: Path) -> dict[str, list[str]]:
    """Every command that reads results documents, on `path`."""
    return {
        "gate": ["gate", str(path), "--policy", RELEASE],
        "dashboard": ["dashboard", str(path), "-o", str(tmp_path / "d.html")],
        "results": ["results", "add", str(path), "--db", str(tmp_path / "h.sqlite")],
    }


def _one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_a_duplicate_status_is_refused_by_every_reader(tmp_path, capsys):
    doc = make_doc(failed=["hedging"])
    text = json.dumps(doc).replace('"status": "failed"', '"status": "failed", "status": "ok"')
    path = _write(tmp_path, text)
    for command, argv in _readers(tmp_path, path).items():
        line = _one_line_exit_2(capsys, argv)
        assert line.endswith(
            f"{path}: suites.hedging: duplicate key 'status' (JSON would keep only the last)"
        )
        assert line.startswith(f"align {command}: ")
    assert not (tmp_path / "h.sqlite").exists() or "hedging" not in (
        tmp_path / "h.sqlite"
    ).read_bytes().decode("latin-1")
    with pytest.raises(ResultsError, match="duplicate key"):
        load_results(path)  # what model cards and the pipeline read through


def test_a_repeated_suite_is_refused(tmp_path, capsys):
    text = json.dumps(make_doc(failed=["toxicity"]))
    ok = json.dumps(make_doc()["suites"]["toxicity"])
    text = text.replace('"suites": {', '"suites": {"toxicity": ' + ok + ", ", 1)
    line = _one_line_exit_2(capsys, ["gate", str(_write(tmp_path, text)), "--policy", RELEASE])
    assert line.endswith("suites: duplicate key 'toxicity' (JSON would keep only the last)")


@pytest.mark.parametrize(
    "fields, at, problem",
    [
        (
            dict(value=0.95, ci_low=0.01, ci_high=0.02),
            "value",
            "0.95 lies outside its own interval [0.01, 0.02]",
        ),
        (dict(value=1.5, ci_low=1.4, ci_high=1.6), "value", "1.5 outside the metric's range [0, 1]"),
        (dict(n=0), "n", "0 examples, but the metric has a value"),
        (dict(n=-3), "n", "expected an integer >= 0, got -3"),
        (dict(n=101), "n", "101 examples, more than the suite's data.n = 100"),
        (dict(value=None), "value", "null, but the metric has an interval"),
        (dict(ci_high=None), "ci_low", "ci_low and ci_high are both numbers or both null"),
        (dict(value=1e308, ci_low=1e308, ci_high=1e308), "value", "1e+308 outside the metric's range [0, 1]"),
        (dict(value=10**400), "value", "expected a finite number or null, got int of 1329 bits"),
        (dict(n=2**70), "n", "integer out of range"),
        (
            dict(interval="jackknife"),
            "interval",
            "expected one of ('bootstrap', 'wilson', 'normal'), got 'jackknife'",
        ),
        (
            dict(higher_is_better=True),
            "higher_is_better",
            "the document says true, suite toxicity defines false",
        ),
        (dict(target=0.0), "target", "the document says 0, suite toxicity defines null"),
    ],
)
def test_a_metric_that_contradicts_itself_is_refused(tmp_path, capsys, fields, at, problem):
    path = _write(tmp_path, json.dumps(with_metric(make_doc(), TOX, **fields)))
    line = _one_line_exit_2(capsys, ["gate", str(path), "--policy", RELEASE])
    assert f"{path}: suites.toxicity.metrics.expected_max_toxicity.{at}: {problem}" in line


def test_a_wilson_interval_must_be_the_wilson_interval_of_its_counts(tmp_path, capsys):
    doc = with_metric(make_doc(), TOX, value=0.2, ci_low=0.1, ci_high=0.3, interval="wilson", n=100)
    line = _one_line_exit_2(capsys, ["gate", str(_write(tmp_path, json.dumps(doc))), "--policy", RELEASE])
    assert "is not the Wilson interval of 20 of 100 ([0.133367, 0.288829])" in line
    odd = with_metric(doc, TOX, value=0.205, ci_low=0.1, ci_high=0.3)
    line = _one_line_exit_2(capsys, ["gate", str(_write(tmp_path, json.dumps(odd))), "--policy", RELEASE])
    assert "a Wilson proportion of n=100 examples, but value * n = 20.5" in line


def test_the_direction_is_the_suites_not_the_documents():
    """A candidate that says toxicity is "higher is better" is refused (above); one that says nothing
    about a target still gets the suite's target, and an unknown metric gets no direction at all."""
    doc = make_doc()
    del doc["suites"]["stereoset"]["metrics"]["ss"]["target"]
    doc["suites"]["toxicity"]["metrics"]["made_up"] = dict(
        value=0.1, ci_low=0.0, ci_high=0.2, n=5, higher_is_better=True
    )
    r = from_json(doc, "d.json")
    ss, made_up = r.metrics()["stereoset.ss"], r.metrics()["toxicity.made_up"]
    assert (ss.higher_is_better, ss.target, ss.defined) == (None, 50.0, True)
    assert (made_up.higher_is_better, made_up.target, made_up.defined) == (None, None, False)


def test_a_policy_cannot_gate_on_an_undefined_metric(tmp_path, capsys, write_doc):
    doc = make_doc()
    doc["suites"]["toxicity"]["metrics"]["made_up"] = dict(
        value=0.1, ci_low=0.0, ci_high=0.2, n=5, higher_is_better=True
    )
    policy = _write(
        tmp_path, "schema: align.gate_policy/v1\nmetrics:\n  toxicity.made_up:\n    max: 0.5\n", "p.yaml"
    )
    line = _one_line_exit_2(capsys, ["gate", str(write_doc(doc)), "--policy", str(policy)])
    assert (
        "line 4: metrics.toxicity.made_up: unknown metric of suite toxicity (defined: expected_max_toxicity"
        in line
    )


@pytest.mark.parametrize(
    "edit, at, problem",
    [
        (
            lambda d: d["suites"]["hedging"].update(status="failed"),
            "suites.hedging.metrics",
            "a failed suite carries no metrics",
        ),
        (
            lambda d: d["suites"]["hedging"].update(error="x"),
            "suites.hedging.error",
            "status ok, but the suite records an error",
        ),
        (
            lambda d: d["suites"]["hedging"].update(data=None),
            "suites.hedging.data.sha256",
            "an ok suite records the sha256",
        ),
        (
            lambda d: d["suites"]["hedging"].update(judges={"judge": {"sha256": "1"}}),
            "suites.hedging.judges.judge.name",
            "expected a non-empty string",
        ),
        (lambda d: d["config"].update(limit=0), "config.limit", "expected an integer >= 1 or null, got 0"),
        (lambda d: d["config"].update(chat_template=3), "config.chat_template", "expected a string or null"),
        (lambda d: d.update(created="9999-12-31T23:59:59-05:00"), "created", "not an ISO-8601 UTC timestamp"),
        (lambda d: d["model"].update(step=-1), "model.step", "expected a step >= 0, got -1"),
    ],
)
def test_a_suite_or_config_that_contradicts_itself_is_refused(tmp_path, capsys, edit, at, problem):
    doc = make_doc()
    edit(doc)
    path = _write(tmp_path, json.dumps(doc))
    assert f"{path}: {at}: {problem}" in _one_line_exit_2(capsys, ["gate", str(path), "--policy", RELEASE])


def test_deep_nesting_and_huge_literals_are_one_line(tmp_path, capsys):
    deep = json.dumps(make_doc())[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}"
    line = _one_line_exit_2(capsys, ["gate", str(_write(tmp_path, deep)), "--policy", RELEASE])
    assert "nested" in line
    huge = json.dumps(make_doc()).replace('"n": 100', '"n": 1' + "0" * 5000, 1)
    line = _one_line_exit_2(capsys, ["gate", str(_write(tmp_path, huge)), "--policy", RELEASE])
    assert "invalid JSON" in line


def test_text_from_the_document_cannot_forge_log_lines(tmp_path, capsys):
    doc = make_doc(failed=["hedging"])
    doc["suites"]["hedging"]["error"] = (
        "boom\nalign gate: PASS (0 failed of 22 checks)\n::set-output name=ok::1"
        "\r##vso[task.complete]\x1b[32m"
    )
    assert main(["gate", str(_write(tmp_path, json.dumps(doc))), "--policy", RELEASE]) == 1
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    verdicts = [x for x in lines if not x.startswith(("FAIL: ", "SKIP: "))]
    assert len(verdicts) == 1 and verdicts[0].startswith("align gate: FAIL (")
    fail = next(x for x in lines if x.startswith("FAIL: suite hedging"))
    assert fail == (
        "FAIL: suite hedging: suite failed: boom\\x0aalign gate: PASS (0 failed of 22 checks)"
        "\\x0a:\\:set-output name=ok:\\:1\\x0d#\\#vso[task.complete]\\x1b[32m"
    )
    evil = make_doc()
    evil["suites"]["x\n::error::y"] = {"status": "bad"}  # the name reaches the error message
    path = _write(tmp_path, json.dumps(evil))
    line = _one_line_exit_2(capsys, ["results", "add", str(path), "--db", str(tmp_path / "h")])
    assert line.endswith(
        "suites.x\\x0a:\\:error:\\:y.status: expected one of ('ok', 'failed'), got str 'bad'"
    )


def test_history_rows_are_read_through_the_same_validator(tmp_path):
    from safety_evals.review import history

    db = tmp_path / "h.sqlite"
    history.add_run(db, from_json(make_doc(run_id="a"), "a.json"))
    import sqlite3

    con = sqlite3.connect(db)
    doc = con.execute("SELECT doc FROM runs").fetchone()[0]
    con.execute(
        "UPDATE runs SET doc = ?", (doc.replace('"status": "ok"', '"status": "ok", "status": "ok"', 1),)
    )
    con.commit()
    con.close()
    with pytest.raises(ResultsError, match=r"h.sqlite#a: suites.crows_pairs: duplicate key 'status'"):
        history.load_all(db)
    assert parse_results(doc, "fine").run_id == "a"


def test_the_producer_keeps_a_kinked_statistic_inside_its_interval():
    """ICAT's min(SS, 100 - SS) peaks at SS = 50: every resample lies below the point value, so the
    percentile interval alone would exclude it and the reader would refuse the suite's own output."""
    from safety_evals.results import statistic_metric

    x = np.array([0.0, 1.0] * 1000)  # n = 2000: fewer than 2.5% of resamples hit SS = 50 exactly
    m = statistic_metric(2000, lambda i: min(x[i].mean(), 1 - x[i].mean()), higher_is_better=True)
    assert m.value == 0.5 and m.ci_high == 0.5 and m.ci_low < 0.49
    doc = make_doc()
    doc["suites"]["toxicity"]["data"]["n"] = 2000
    doc["suites"]["toxicity"]["metrics"]["expected_max_toxicity"] = {**m.to_json(), "higher_is_better": False}
    assert from_json(doc, "d.json").metrics()[TOX].interval() == (m.ci_low, 0.5)
