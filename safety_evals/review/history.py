"""`align results add|list`: a local SQLite history of eval runs (stdlib sqlite3).

Two tables: `runs` (one row per run_id, with the whole validated document so the dashboard can
rebuild it, examples included) and `metrics` (one row per run and metric, for trend queries).
Adding is idempotent on run_id: the same document again is a no-op; a different document under a
known run_id is refused unless `--replace`, since run ids are meant to be unique per run. The check
and the insert share one `BEGIN IMMEDIATE` transaction, so of two concurrent adds of one run_id the
second waits for the first and then sees its row. `PRAGMA user_version` holds SCHEMA_VERSION.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from align.errors import InvalidInput
from safety_evals.review.documents import Results, load_results, parse_results
from align.safe_text import one_line

DEFAULT_DB = "results.sqlite"
SCHEMA_VERSION = 1
LOCK_TIMEOUT_S = 60.0  # adds hold the write lock for milliseconds; a parallel CI fan-in may queue

_SCHEMA_SQL = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    created TEXT NOT NULL,            -- ISO-8601 UTC, sorts chronologically
    model_name TEXT NOT NULL,
    model_variant TEXT,
    model_step INTEGER,
    model_sha256 TEXT,
    source TEXT,                      -- file the run was added from
    doc_sha256 TEXT NOT NULL,         -- hash of the stored document, for idempotent adds
    doc TEXT NOT NULL                 -- the document as JSON
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    metric TEXT NOT NULL,             -- full name suite.metric
    suite TEXT NOT NULL,
    value REAL, ci_low REAL, ci_high REAL, n INTEGER,
    higher_is_better INTEGER,         -- 1 / 0 / NULL
    target REAL,
    PRIMARY KEY (run_id, metric)
);
CREATE INDEX metrics_by_name ON metrics(metric)
"""


class HistoryError(InvalidInput):
    """A conflicting add or a missing run; the message names the database and run id (one line)."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


@dataclasses.dataclass(frozen=True)
class RunRow:
    run_id: str
    created: str
    model_name: str
    model_variant: str | None
    model_step: int | None
    suites_ok: int
    suites_failed: int


@dataclasses.dataclass(frozen=True)
class MetricRow:
    run_id: str
    created: str
    model_name: str
    model_variant: str | None
    model_step: int | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None


@contextlib.contextmanager
def connect(db: str | Path, write: bool = False) -> Iterator[sqlite3.Connection]:
    """Open (creating the tables) and run the block in one transaction, holding the write lock from
    the start when `write`; commit on success, roll back on error, always close. SQLite errors
    (not a database, corrupt, locked past LOCK_TIMEOUT_S) become HistoryError naming the file."""
    try:
        con = sqlite3.connect(str(db), timeout=LOCK_TIMEOUT_S, isolation_level=None)  # we BEGIN ourselves
    except sqlite3.Error as e:
        raise HistoryError(f"{db}: cannot open the results history: {e}") from e
    try:
        con.execute("PRAGMA foreign_keys = ON")
        if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            _create(con, db)
        con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        yield con
        con.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.ProgrammingError):  # misuse of the API: a bug, keep the traceback
            raise
        raise HistoryError(f"{db}: cannot use the results history: {e}") from e
    finally:
        with contextlib.suppress(sqlite3.Error):  # keep the error that got us here
            if con.in_transaction:
                con.execute("ROLLBACK")
        con.close()


def _create(con: sqlite3.Connection, db: str | Path) -> None:
    """Create the tables in an empty file, under the write lock so two first adds cannot both do it."""
    con.execute("BEGIN IMMEDIATE")
    version = con.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version not in (0, SCHEMA_VERSION):
        raise HistoryError(
            f"{db}: results history schema version {version}; this align reads version "
            f"{SCHEMA_VERSION} (written by a newer align?)"
        )
    if version == 0 and tables and tables != {"runs", "metrics"}:
        raise HistoryError(f"{db}: not a results history (it holds tables {', '.join(sorted(tables))})")
    if not tables:
        for stmt in _SCHEMA_SQL.split(";"):  # not executescript: it would COMMIT our BEGIN
            con.execute(stmt)
    # version 0 with exactly runs + metrics: written before the version stamp, same layout as 1
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    con.execute("COMMIT")


def add_run(db: str | Path, results: Results, replace: bool = False) -> bool:
    """Store one run; returns False when the identical run was already there."""
    doc = json.dumps(results.raw, ensure_ascii=False)  # key order kept: suites show in run order
    digest = hashlib.sha256(doc.encode()).hexdigest()
    with connect(db, write=True) as con:
        row = con.execute("SELECT doc_sha256 FROM runs WHERE run_id = ?", (results.run_id,)).fetchone()
        if row and row[0] == digest:
            return False
        if row and not replace:
            raise HistoryError(
                f"{db}: run_id {results.run_id!r} is already recorded with a different "
                f"document (from {results.source}); pass --replace to overwrite it"
            )
        con.execute("DELETE FROM runs WHERE run_id = ?", (results.run_id,))
        _insert(con, results, digest, doc)
    return True


def _insert(con: sqlite3.Connection, results: Results, digest: str, doc: str) -> None:
    m = results.model
    con.execute(
        "INSERT INTO runs (run_id, created, model_name, model_variant, model_step, model_sha256, source, "
        "doc_sha256, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (results.run_id, _iso(results), m.name, m.variant, m.step, m.sha256, results.source, digest, doc),
    )
    con.executemany(
        "INSERT INTO metrics (run_id, metric, suite, value, ci_low, ci_high, n, higher_is_better, target) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                results.run_id,
                k,
                x.suite,
                x.value,
                x.ci_low,
                x.ci_high,
                x.n,
                None if x.higher_is_better is None else int(x.higher_is_better),
                x.target,
            )
            for k, x in results.metrics().items()
        ],
    )


def _iso(results: Results) -> str:
    return results.created.strftime("%Y-%m-%dT%H:%M:%SZ")


def list_runs(db: str | Path) -> list[RunRow]:
    """All runs, oldest first."""
    with connect(db) as con:
        rows = con.execute("SELECT run_id, doc FROM runs ORDER BY created, run_id").fetchall()
    out = []
    for run_id, doc in rows:
        r = parse_results(doc, f"{db}#{run_id}")
        ok = sum(s.ok for s in r.suites.values())
        m = r.model
        out.append(RunRow(run_id, _iso(r), m.name, m.variant, m.step, ok, len(r.suites) - ok))
    return out


def metric_history(db: str | Path, metric: str) -> list[MetricRow]:
    """One metric across runs, oldest first."""
    with connect(db) as con:
        rows = con.execute(
            "SELECT r.run_id, r.created, r.model_name, r.model_variant, r.model_step, "
            "m.value, m.ci_low, m.ci_high, m.n FROM metrics m JOIN runs r USING (run_id) "
            "WHERE m.metric = ? ORDER BY r.created, r.run_id",
            (metric,),
        ).fetchall()
    return [MetricRow(*row) for row in rows]


def load_all(db: str | Path) -> list[Results]:
    """Every stored run as a validated document (examples included), oldest first."""
    with connect(db) as con:
        rows = con.execute("SELECT run_id, doc FROM runs ORDER BY created, run_id").fetchall()
    return [parse_results(doc, f"{db}#{run_id}") for run_id, doc in rows]


def load_run(db: str | Path, run_id: str) -> Results:
    with connect(db) as con:
        row = con.execute("SELECT doc FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise HistoryError(f"{db}: no run with run_id {run_id!r}")
    return parse_results(row[0], f"{db}#{run_id}")


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="append results JSON files to the history (idempotent on run_id)")
    add.add_argument("files", nargs="+", help="results JSON files")
    add.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
    add.add_argument(
        "--replace", action="store_true", help="overwrite a run_id recorded with another document"
    )
    ls = sub.add_parser("list", help="list runs, or one metric across runs")
    ls.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
    ls.add_argument("--metric", help="full metric name, e.g. toxicity.expected_max_toxicity")


def run(args: argparse.Namespace) -> int:
    # ResultsError / HistoryError are InputErrors: pipelines/cli.py prints them (one line) and exits 2.
    if args.action == "add":
        for f in args.files:
            added = add_run(args.db, load_results(f), replace=args.replace)
            print(f"{'added' if added else 'already recorded'}: {f}")
        return 0
    if not Path(args.db).exists():
        raise HistoryError(f"no database at {args.db}")
    print(_format_metric(args.db, args.metric) if args.metric else _format_runs(args.db))
    return 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    rows = [[one_line(x) for x in r] for r in rows]  # names and ids come from the documents
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _s(x) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def _format_runs(db: str) -> str:
    rows = [
        [
            r.run_id,
            r.created,
            r.model_name,
            _s(r.model_variant),
            _s(r.model_step),
            str(r.suites_ok),
            str(r.suites_failed),
        ]
        for r in list_runs(db)
    ]
    return _table(["run_id", "created", "model", "variant", "step", "suites_ok", "suites_failed"], rows)


def _format_metric(db: str, metric: str) -> str:
    hist = metric_history(db, metric)
    if not hist:
        return f"no runs record metric {metric!r}"
    rows = [
        [
            r.run_id,
            r.created,
            r.model_name,
            _s(r.model_variant),
            _s(r.model_step),
            _s(r.value),
            f"[{_s(r.ci_low)}, {_s(r.ci_high)}]",
            _s(r.n),
        ]
        for r in hist
    ]
    return _table(["run_id", "created", "model", "variant", "step", metric, "95% CI", "n"], rows)
