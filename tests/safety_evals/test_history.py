"""`align results add|list`: SQLite round trip, idempotence on run_id, metric history."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from pipelines.cli import main
from safety_evals.review import history
from safety_evals.review.documents import from_json, load_results


def test_add_list_round_trip(tmp_path, make_doc, with_metric, write_doc, capsys):
    db = tmp_path / "h.sqlite"
    a = write_doc(make_doc(run_id="a", created="2026-11-20T10:00:00Z", step=100), "a.json")
    b_doc = with_metric(
        make_doc(run_id="b", created="2026-11-21T10:00:00Z", step=200, failed=["bbq"]),
        "toxicity.expected_max_toxicity",
        value=0.3,
        ci_low=0.25,
        ci_high=0.35,
    )
    b = write_doc(b_doc, "b.json")
    # added newest first on purpose: listing is by created time
    assert main(["results", "add", str(b), str(a), "--db", str(db)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"added: {b}", f"added: {a}"]

    runs = history.list_runs(db)
    assert [(r.run_id, r.model_step, r.suites_ok, r.suites_failed) for r in runs] == [
        ("a", 100, 6, 0),
        ("b", 200, 6, 1),
    ]
    tox = history.metric_history(db, "toxicity.expected_max_toxicity")
    assert [(r.run_id, r.value, r.ci_low, r.ci_high, r.n) for r in tox] == [
        ("a", 0.2, 0.17, 0.23, 100),
        ("b", 0.3, 0.25, 0.35, 100),
    ]
    # the stored document rebuilds exactly what the file gives, examples and all
    assert history.load_run(db, "b").metrics() == load_results(b).metrics()
    assert history.load_run(db, "b").suites["bbq"].error == load_results(b).suites["bbq"].error
    assert [r.run_id for r in history.load_all(db)] == ["a", "b"]
    # a +02:00 stamp is stored as UTC, so it sorts before "a" (10:00Z)
    c = write_doc(make_doc(run_id="c", created="2026-11-20T11:00:00+02:00"), "c.json")
    assert main(["results", "add", str(c), "--db", str(db)]) == 0
    assert [(r.run_id, r.created) for r in history.list_runs(db)][0] == ("c", "2026-11-20T09:00:00Z")
    capsys.readouterr()

    assert main(["results", "list", "--db", str(db), "--metric", "toxicity.expected_max_toxicity"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "run_id",
        "created",
        "model",
        "variant",
        "step",
        "toxicity.expected_max_toxicity",
        "95%",
        "CI",
        "n",
    ]
    assert lines[3].split() == [
        "b",
        "2026-11-21T10:00:00Z",
        "gemma3-270m",
        "chat",
        "200",
        "0.3",
        "[0.25,",
        "0.35]",
        "100",
    ]
    assert main(["results", "list", "--db", str(db)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == [
        "a",
        "2026-11-20T10:00:00Z",
        "gemma3-270m",
        "chat",
        "100",
        "6",
        "0",
    ]


def test_add_is_idempotent_and_refuses_conflicts(tmp_path, make_doc, with_metric, write_doc, capsys):
    db = tmp_path / "h.sqlite"
    path = write_doc(make_doc(run_id="a"), "a.json")
    assert main(["results", "add", str(path), "--db", str(db)]) == 0
    assert main(["results", "add", str(path), "--db", str(db)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"already recorded: {path}"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
        assert con.execute("SELECT COUNT(*) FROM metrics").fetchone() == (7,)

    changed = write_doc(with_metric(make_doc(run_id="a"), "stereoset.icat", value=71.0), "a2.json")
    assert main(["results", "add", str(changed), "--db", str(db)]) == 2
    assert "run_id 'a' is already recorded with a different document" in capsys.readouterr().err
    assert main(["results", "add", str(changed), "--db", str(db), "--replace"]) == 0
    assert [r.value for r in history.metric_history(db, "stereoset.icat")] == [71.0]
    with sqlite3.connect(db) as con:  # the replaced run's metric rows did not pile up
        assert con.execute("SELECT COUNT(*) FROM metrics").fetchone() == (7,)


def test_bad_input_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["results", "add", str(bad), "--db", str(tmp_path / "h.sqlite")]) == 2
    assert f"{bad}: invalid JSON at line 1 column 2" in capsys.readouterr().err
    assert main(["results", "list", "--db", str(tmp_path / "missing.sqlite")]) == 2
    with pytest.raises(history.HistoryError, match="no run with run_id 'zz'"):
        history.load_run(tmp_path / "h.sqlite", "zz")


def test_concurrent_adds_of_one_run_id_conflict(tmp_path, make_doc, with_metric, monkeypatch):
    """Two connections add run_id 'a' with different documents: the second must be refused, not
    silently overwrite. The first add pauses between its check and its insert."""
    db = tmp_path / "h.sqlite"
    first = from_json(make_doc(run_id="a"), "a.json")
    second = from_json(with_metric(make_doc(run_id="a"), "stereoset.icat", value=71.0), "a2.json")
    checked, release = threading.Event(), threading.Event()
    real_insert = history._insert

    def slow_insert(*args):
        if threading.current_thread().name == "first":
            checked.set()
            assert release.wait(10)
        real_insert(*args)

    monkeypatch.setattr(history, "_insert", slow_insert)
    outcome = {}

    def add(name, results):
        try:
            outcome[name] = history.add_run(db, results)
        except history.HistoryError as e:
            outcome[name] = e

    threads = [
        threading.Thread(target=add, args=("first", first), name="first"),
        threading.Thread(target=add, args=("second", second), name="second"),
    ]
    threads[0].start()
    assert checked.wait(10)  # the first add has checked: no run 'a' yet
    threads[1].start()
    threads[1].join(0.5)
    assert threads[1].is_alive()  # the second waits for the first's write lock ...
    release.set()
    for t in threads:
        t.join(30)
    assert outcome["first"] is True
    assert isinstance(outcome["second"], history.HistoryError)  # ... then sees its row and refuses
    assert "already recorded with a different document" in str(outcome["second"])
    assert [r.value for r in history.metric_history(db, "stereoset.icat")] == [70.0]


def test_schema_version_is_stamped_and_checked(tmp_path, make_doc):
    db = tmp_path / "h.sqlite"
    history.add_run(db, from_json(make_doc(run_id="a"), "a.json"))
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (history.SCHEMA_VERSION,)
        con.execute("PRAGMA user_version = 0")  # a history written before the version stamp still opens
    assert [r.run_id for r in history.list_runs(db)] == ["a"]
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone() == (history.SCHEMA_VERSION,)
        con.execute("PRAGMA user_version = 7")
    with pytest.raises(
        history.HistoryError,
        match=r"h.sqlite: results history schema version 7; this align "
        r"reads version 1",
    ):
        history.list_runs(db)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE notes (x)")
    with pytest.raises(history.HistoryError, match="other.sqlite: not a results history"):
        history.list_runs(other)


NOT_SQLITE = b"this is not a database, just text\n" * 10
CORRUPT = b"SQLite format 3\x00" + b"\xff" * 200  # the right magic, a garbage header


@pytest.mark.parametrize("content", [NOT_SQLITE, CORRUPT])
def test_corrupt_or_foreign_file_is_one_line_exit_2(tmp_path, make_doc, write_doc, capsys, content):
    db = tmp_path / "h.sqlite"
    db.write_bytes(content)
    res = write_doc(make_doc(run_id="a"), "a.json")
    assert main(["results", "add", str(res), "--db", str(db)]) == 2
    assert main(["results", "list", "--db", str(db)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(f"{db}: cannot use the results history:" in line for line in err)
