"""Fixtures: crafted `align.eval_results/v1` documents (docs/results_schema.md) for gate/history/dashboard."""

from __future__ import annotations

import copy
import json

import pytest

XSS_OUTPUT = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> & "quoted"'

# full metric name -> (value, ci_low, ci_high, higher_is_better, target)
DEFAULT_METRICS = {
    "crows_pairs.pct_stereotype": (0.60, 0.56, 0.64, False, 0.5),
    "stereoset.icat": (70.0, 67.0, 73.0, True, None),
    "stereoset.ss": (55.0, 53.0, 57.0, None, 50.0),
    "toxicity.expected_max_toxicity": (0.20, 0.17, 0.23, False, None),
    "factuality.truthful_informative_rate": (0.50, 0.45, 0.55, True, None),
    "hedging.hedging_balanced_accuracy": (0.60, 0.55, 0.65, True, None),
    "attribution.ais": (0.40, 0.35, 0.45, True, None),
}
# the suites the release policy adds to the above
RELEASE_EXTRA_METRICS = {
    "refusal.refusal_balanced_accuracy": (0.70, 0.65, 0.75, True, None),
    "ifeval.prompt_level_strict_acc": (0.45, 0.40, 0.50, True, None),
}


def make_doc(
    run_id="run-a",
    created="2026-11-23T15:01:02Z",
    metrics=None,
    failed=(),
    variant="chat",
    step=1200,
    name="gemma3-270m",
    examples=None,
) -> dict:
    """A valid results document; `metrics` maps full name -> (value, lo, hi, hib, target)."""
    metrics = DEFAULT_METRICS if metrics is None else metrics
    suites: dict = {}
    for full, (value, lo, hi, hib, target) in metrics.items():
        suite, name_ = full.split(".", 1)
        s = suites.setdefault(
            suite,
            {
                "status": "ok",
                "version": "1",
                "error": None,
                "seconds": 1.0,
                "data": {"source": "x", "sha256": "0", "n": 100},
                "metrics": {},
                "examples": [],
            },
        )
        m = {
            "value": value,
            "ci_low": lo,
            "ci_high": hi,
            "n": 100,
            "higher_is_better": hib,
            "description": f"about {name_}",
        }
        if target is not None:
            m["target"] = target
        s["metrics"][name_] = m
    for suite in failed:
        suites[suite] = {
            "status": "failed",
            "version": "1",
            "metrics": {},
            "examples": [],
            "error": f"RuntimeError: {suite} exploded\nTraceback tail <b>here</b>",
        }
    for suite, exs in (examples or {}).items():
        suites[suite]["examples"] = exs
    return {
        "schema": "align.eval_results/v1",
        "run_id": run_id,
        "created": created,
        "model": {"name": name, "path": "/m", "sha256": "ab" * 32, "variant": variant, "step": step},
        "config": {"limit": 100, "seed": 0, "suites": list(suites)},
        "suites": suites,
    }


def with_metric(doc: dict, full: str, **fields) -> dict:
    """A copy of `doc` with some fields of one metric replaced."""
    out = copy.deepcopy(doc)
    suite, name = full.split(".", 1)
    out["suites"][suite]["metrics"][name].update(fields)
    return out


@pytest.fixture
def write_doc(tmp_path):
    """write_doc(doc, name) -> path of the JSON file in tmp_path."""

    def write(doc: dict, name: str = "results.json"):
        path = tmp_path / name
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return write


@pytest.fixture(name="make_doc")
def _make_doc_fixture():
    return make_doc


@pytest.fixture(name="with_metric")
def _with_metric_fixture():
    return with_metric


@pytest.fixture
def xss_output() -> str:
    return XSS_OUTPUT
