"""review/definitions.py is a static copy of what the suites write (review/ may not import suites/):
run every suite of `align eval` on the fake LM and compare names, directions and targets."""

import json

import pytest

from pipelines.cli import main
from safety_evals import api
from safety_evals.review.definitions import SUITES, definition
from tests.safety_evals.fakes import FakeJudge, FakeLM, FakeScorer
from tests.safety_evals.rule_judges import hedge_judge, refusal_judge

FAKE_JUDGES = {
    "truth": FakeJudge("truth", lambda r: "true"),
    "info": FakeJudge("info", lambda r: "uninformative"),
    "hedge": hedge_judge(),
    "refusal": refusal_judge(),
    "attribution": FakeJudge("attribution", lambda r: "attributable"),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The document `align eval` writes for every suite it knows, on the fake LM (3 examples each)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(api, "load_lm", lambda options: (FakeLM(default="I don't know."), None))
    mp.setattr(api, "toxicity_scorer", lambda options: FakeScorer())
    mp.setattr(api, "trained_judge", FAKE_JUDGES.__getitem__)
    out = tmp_path_factory.mktemp("defs") / "r.json"
    try:
        args = ["eval", "--model", "fake", "--suite", ",".join(api.SUITES), "--limit", "3", "--out", str(out)]
        main([*args, "--toxicity-samples", "2", "--no-progress"])
    finally:
        mp.undo()
    return json.loads(out.read_text())


def test_every_suite_of_align_eval_is_defined(written):
    assert set(api.SUITES) <= set(SUITES)
    failed = {k: s["error"] for k, s in written["suites"].items() if s["status"] != "ok"}
    assert failed == {}


def test_definitions_match_what_the_suites_write(written):
    for suite, s in written["suites"].items():
        written_names = {name.split("/", 1)[0] for name in s["metrics"]}
        assert written_names == set(SUITES[suite]), suite
        for name, m in s["metrics"].items():
            d = definition(suite, name)
            assert m["higher_is_better"] is d.higher_is_better, f"{suite}.{name}"
            assert m.get("target") in (None, d.target), f"{suite}.{name}"
            if d.higher_is_better is None:  # the target decides the direction: it must be written
                assert m.get("target") == d.target, f"{suite}.{name}"


def test_breakdowns_share_their_metric_definition():
    assert definition("crows_pairs", "pct_stereotype/gender") == definition("crows_pairs", "pct_stereotype")
    assert definition("toxicity", "nope") is None and definition("nope", "x") is None
