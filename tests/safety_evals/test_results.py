"""Results document: suite capture (ok / failed), JSON-safety, atomic write, reader round trip."""

import json
import math
import os
import stat
from pathlib import Path

import pytest

from safety_evals import results
from safety_evals.review import documents as results_io
from safety_evals.results import DataInfo, Metric, SuiteResult


def _ok_suite():
    return SuiteResult(
        DataInfo("src", "ab" * 32, 3),
        {
            "m": results.mean_metric([1, 0, 1], higher_is_better=True, description="d"),
            "m/x": Metric(float("nan"), None, None, 0, None, target=0.5),
        },
        [results.example(1, prompt="<p>", output="o", score=math.inf, label=None, metric="m", arr=(1, 2.5))],
    )


def test_ok_suite_entry():
    ticks = iter([10.0, 12.5])
    entry = results.run_suite("3", _ok_suite, clock=lambda: next(ticks))
    assert entry["status"] == "ok" and entry["error"] is None and entry["version"] == "3"
    assert entry["seconds"] == 2.5
    assert entry["data"] == {"source": "src", "sha256": "ab" * 32, "n": 3}
    m = entry["metrics"]["m"]
    assert m["value"] == pytest.approx(2 / 3) and m["n"] == 3 and m["higher_is_better"] is True
    assert m["ci_low"] <= m["value"] <= m["ci_high"]
    # NaN / inf become null; target kept; extra tuples become lists
    assert entry["metrics"]["m/x"] == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "n": 0,
        "higher_is_better": None,
        "target": 0.5,
    }
    assert entry["examples"][0] == {
        "id": "1",
        "prompt": "<p>",
        "output": "o",
        "score": None,
        "label": None,
        "metric": "m",
        "extra": {"arr": [1, 2.5]},
    }


def test_failed_suite_is_recorded_with_its_error_never_dropped():
    def boom():
        raise RuntimeError("data file missing")

    entry = results.run_suite("1", boom)
    assert entry["status"] == "failed"
    assert entry["error"].startswith("RuntimeError: data file missing")
    assert "Traceback" in entry["error"] or "boom" in entry["error"]
    assert entry["metrics"] == {} and entry["examples"] == []
    # the traceback names files from the package directory on: no path of this machine
    assert 'File "tests/safety_evals/test_results.py"' in entry["error"], entry["error"]
    assert str(Path(__file__).resolve().parents[2]) not in entry["error"]


def test_portable_traceback_keeps_package_relative_names():
    text = 'File "/x/y/.venv/lib/python3.11/site-packages/jax/_src/a.py", line 1\nFile "/abs/b.py"'
    assert results.portable_traceback(text) == 'File "jax/_src/a.py", line 1\nFile "b.py"'


def test_document_round_trips_through_the_consumer_reader(tmp_path):
    doc = results.build_document(
        model=results.model_record("tiny", None, variant="chat", step=3),
        config={"limit": 3, "seed": 0, "suites": ["a", "b"]},
        suites={"a": results.run_suite("1", _ok_suite), "b": results.run_suite("1", lambda: 1 / 0)},
    )
    path = tmp_path / "out" / "results.json"
    results.write_atomic(path, doc)
    parsed = results_io.load_results(path)
    assert parsed.run_id == doc["run_id"] and parsed.model.variant == "chat" and parsed.model.step == 3
    assert parsed.suites["a"].ok and not parsed.suites["b"].ok
    assert "ZeroDivisionError" in parsed.suites["b"].error
    assert parsed.metrics()["a.m"].value == pytest.approx(2 / 3)
    assert doc["schema"] == "align.eval_results/v1" and doc["created"].endswith("Z")


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    results.write_atomic(path, {"v": 1})

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        results.write_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # temp file removed


def test_write_atomic_gives_the_mode_open_would_not_mkstemps_0600(tmp_path):
    # release jobs read results as another user: the file must be readable as open() would leave it
    saved = os.umask(0o022)
    try:
        path = tmp_path / "results.json"
        results.write_atomic(path, {"v": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        results.write_atomic(path, {"v": 2})
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # a rewrite keeps the file's own mode
    finally:
        os.umask(saved)


def test_write_atomic_rejects_nan_before_touching_the_file(tmp_path):
    path = tmp_path / "r.json"
    results.write_atomic(path, {"v": 1})
    with pytest.raises(ValueError):
        results.write_atomic(path, {"v": float("nan")})
    assert json.loads(path.read_text()) == {"v": 1}


def test_model_record_hashes_weights_in_sorted_order(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "b.bin").write_bytes(b"BB")
    (d / "a.bin").write_bytes(b"AA")
    import hashlib

    rec = results.model_record("m", str(d), variant=None)
    assert rec["sha256"] == hashlib.sha256(b"AABB").hexdigest()
    assert rec["path"] == str(d.resolve()) and rec["variant"] is None and rec["step"] is None
    assert results.model_record("gemma3-270m", "gemma3-270m")["sha256"] is None


def test_run_ids_are_unique_and_timestamped():
    ids = {results.new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i.split("-")[0]) == 16 and i.split("-")[0].endswith("Z") for i in ids)


def test_reader_rejects_non_finite_numbers_however_they_arrive():
    from tests.safety_evals.conftest import make_doc, with_metric

    full = "toxicity.expected_max_toxicity"
    # a document decoded elsewhere (the history db's json.loads accepts NaN) goes through from_json
    for bad in (float("nan"), float("inf"), 10**400):
        with pytest.raises(results_io.ResultsError, match=r"expected_max_toxicity.value: expected a finite"):
            results_io.from_json(with_metric(make_doc(), full, value=bad), "db#run")
    # a literal too large for a float decodes to inf without passing parse_constant
    text = json.dumps(with_metric(make_doc(), full, ci_high=12345.5)).replace("12345.5", "1e999")
    with pytest.raises(results_io.ResultsError, match=r"expected_max_toxicity.ci_high: expected a finite"):
        results_io.parse_results(text, "r.json")


def test_data_record_says_what_the_reader_dropped(tmp_path):
    assert "dropped" not in DataInfo("src", "ab" * 32, 3).to_json()  # nothing dropped: no key
    info = DataInfo("src", "ab" * 32, 3, {"blank answer choices": 2})
    assert info.to_json() == {
        "source": "src",
        "sha256": "ab" * 32,
        "n": 3,
        "dropped": {"blank answer choices": 2},
    }
    entry = results.run_suite("1", lambda: SuiteResult(info, _ok_suite().metrics))
    doc = results.build_document(model=results.model_record("tiny", None), config={}, suites={"a": entry})
    results.write_atomic(tmp_path / "r.json", doc)
    parsed = results_io.load_results(tmp_path / "r.json")  # the consumers read it as before
    assert parsed.suites["a"].ok and parsed.suites["a"].data["dropped"] == {"blank answer choices": 2}
