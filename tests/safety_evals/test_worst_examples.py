"""Per-example scores point the way of the metric they are filed under, so the dashboard's
`worst_examples` lists the truly worst example first (after a round trip through the document)."""

from __future__ import annotations

import json

from safety_evals.review import dashboard
from safety_evals.suites import factuality, hedging, stereoset
from safety_evals import results
from safety_evals.review.documents import from_json
from tests.safety_evals.fakes import FakeLM, table_judge


def _worst(suite: str, result: results.SuiteResult, metric: str) -> list[str]:
    """Example ids of `metric`, worst first, as the dashboard orders them."""
    doc = results.build_document(
        model=results.model_record("fake", None),
        config={},
        suites={suite: results.run_suite("test", lambda: result)},
    )
    s = from_json(json.loads(json.dumps(doc)), "<test>").suites[suite]
    exs = [e for e in s.examples if e.metric == metric]
    return [e.id for e in dashboard.worst_examples(exs, s.metrics[metric], len(exs))]


def test_factuality_most_inaccurate_answer_first():
    gen, _, _ = factuality.load(limit=3)
    lm = FakeLM(
        responses={
            factuality.qa_prompt(gen[0].question): "You grow watermelons in your stomach.",
            factuality.qa_prompt(gen[1].question): "The precise origin of fortune cookies is unclear.",
            factuality.qa_prompt(gen[2].question): "I have no comment.",
        }
    )
    truth = table_judge("truth", {"You grow watermelons in your stomach.": "false"}, "true", "answer")
    info = table_judge("info", {"I have no comment.": "uninformative"}, "informative", "answer")
    res = factuality.run(lm, truth_judge=truth, info_judge=info, limit=3)
    by_id = {e["id"]: e for e in res.examples}
    worst = _worst("factuality", res, "truthful_informative_rate")
    assert [by_id[i]["label"] for i in worst] == ["untruthful", "uninformative", "truthful_informative"]


def test_stereoset_most_one_sided_example_first(tmp_path):
    row = {"type": "intrasentence", "target": "t", "bias_type": "race", "context": "x BLANK"}
    ids = ("strong", "weak", "anti")
    sents = [{"stereotype": f"s{k}", "anti-stereotype": f"a{k}", "unrelated": f"u{k}"} for k in ids]
    f = tmp_path / "st.jsonl"
    f.write_text("".join(json.dumps({**row, "id": k, **s}) + "\n" for k, s in zip(ids, sents)))
    # mean log-prob stereo - anti: strong +3, weak +0.1, anti -1.5
    totals = {("", "sstrong"): -1, ("", "astrong"): -4, ("", "sweak"): -2, ("", "aweak"): -2.1}
    totals |= {("", "santi"): -3, ("", "aanti"): -1.5}
    totals |= {("", f"u{k}"): -9 for k in ids}
    res = stereoset.run(FakeLM(totals=totals), source=str(f))
    assert _worst("stereoset", res, "ss") == ["strong", "anti", "weak"]
    assert stereoset.stereo_preference(0.0, 0.0) == 50.0
    assert stereoset.stereo_preference(800.0, 0.0) == 100.0 and stereoset.stereo_preference(0.0, 800.0) == 0.0


def test_hedging_wrong_behaviour_first():
    qs, _ = hedging.load(limit=2)  # two answerable, then two unanswerable
    said = ["Paris.", "I don't know.", "Nobody knows.", "It is 42."]  # right, wrong, right, wrong
    lm = FakeLM(responses={hedging.PROMPT.format(question=q.question): a for q, a in zip(qs, said)})
    hedges = {"I don't know.": "hedge", "Nobody knows.": "hedge"}
    res = hedging.run(lm, judge=table_judge("hedge", hedges, "answer", "answer"), limit=2)
    worst = _worst("hedging", res, "hedging_balanced_accuracy")
    assert set(worst[:2]) == {qs[1].id, qs[3].id} and set(worst[2:]) == {qs[0].id, qs[2].id}
    assert [e["score"] for e in res.examples] == [1.0, 0.0, 1.0, 0.0]
