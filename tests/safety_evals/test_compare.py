"""safety_evals.review.compare: values beside a base and the paired change, `align compare`."""

import json

import numpy as np
import pytest

from align.data.selfaware import QAItem
from align.errors import InvalidInput
from align.intervals import wilson_ci
from safety_evals import bootstrap, results
from safety_evals.review.compare import comparison_markdown, compare_documents
from safety_evals.review.documents import load_results
from safety_evals.suites import (
    attribution,
    bbq,
    crows_pairs,
    factuality,
    hedging,
    ifeval,
    refusal,
    stereoset,
    toxicity,
    truthfulqa_mc,
)
from tests.safety_evals import rule_judges
from tests.safety_evals.fakes import FakeJudge, FakeLM, FakeScorer
from tests.paths import DATA

# Four SelfAware-like questions: two answerable (a1, a2), two not (u1, u2).
QUESTIONS = [
    QAItem("a1", "Who wrote Hamlet?", True, ("Shakespeare",)),
    QAItem("a2", "What is 2+2?", True, ("4",)),
    QAItem("u1", "What will I dream tonight?", False),
    QAItem("u2", "What is the last digit of pi?", False),
]


def _hedging_doc(tmp_path, name: str, hedges: set[str], judge: str = "rule") -> object:
    """A results document of the hedging suite where the model hedges exactly on `hedges`."""
    hedged = {q.question for q in QUESTIONS if q.id in hedges}
    lm = FakeLM(default=lambda p, k, s: "I don't know." if p.removeprefix("Q: ")[:-3] in hedged else "Paris.")
    rule = FakeJudge("hedge", lambda r: "hedge" if "know" in r["answer"] else "answer", name=judge)
    info = results.DataInfo("selfaware.json", "ab" * 32, len(QUESTIONS))
    suite = results.run_suite(hedging.VERSION, lambda: hedging.score(lm, QUESTIONS, info, judge=rule))
    doc = results.build_document(
        model=results.model_record(name, None),
        config={"limit": 2, "suites": ["hedging"]},
        suites={"hedging": suite},
    )
    results.write_atomic(tmp_path / f"{name}.json", doc)
    return load_results(tmp_path / f"{name}.json")


def _reference_balanced_accuracy(answerable, hedged) -> float | None:
    """Written out per class, independently of the suites and the recipes."""
    unans = [h for a, h in zip(answerable, hedged) if not a]
    ans = [h for a, h in zip(answerable, hedged) if a]
    if not unans or not ans:
        return None
    return (sum(unans) / len(unans) + sum(1 - h for h in ans) / len(ans)) / 2


def test_the_paired_change_is_the_hand_computed_difference_with_its_bootstrap_interval(tmp_path):
    base = _hedging_doc(tmp_path, "base", set())  # never hedges: balanced accuracy 0.5
    tuned = _hedging_doc(tmp_path, "tuned", {"a1", "u1", "u2"})  # (1 + 1/2) / 2 = 0.75
    doc = compare_documents(base, {"tuned": tuned})
    assert doc["schema"] == "align.comparison/v1" and doc["models"] == ["base", "tuned"]
    rows = {r["metric"]: r for r in doc["rows"]}
    row = rows["hedging_balanced_accuracy"]
    assert row["values"]["base"]["value"] == 0.5 and row["values"]["tuned"]["value"] == 0.75
    change = row["change"]["tuned"]
    assert change["method"] == "paired_bootstrap" and change["n_paired"] == 4
    assert change["mean"] == pytest.approx(0.25)
    # The same 1000 resamples of the four questions for both models, differences per resample.
    answerable = [True, True, False, False]
    base_h, tuned_h = [0, 0, 0, 0], [1, 0, 1, 1]
    diffs = []
    for idx in bootstrap.resample_indices(4):
        a = [answerable[i] for i in idx]
        t = _reference_balanced_accuracy(a, [tuned_h[i] for i in idx])
        b = _reference_balanced_accuracy(a, [base_h[i] for i in idx])
        if t is not None and b is not None:
            diffs.append(t - b)
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert (change["ci_low"], change["ci_high"]) == pytest.approx((min(low, 0.25), max(high, 0.25)))
    # hedge rate on unanswerable questions: 0 -> 1 over the two unanswerable ones, no variation left
    unans = rows["hedge_rate_unanswerable"]["change"]["tuned"]
    assert (unans["mean"], unans["ci_low"], unans["ci_high"], unans["n_paired"]) == (1.0, 1.0, 1.0, 2)
    assert rows["false_hedge_rate_answerable"]["change"]["tuned"]["mean"] == pytest.approx(0.5)


def test_a_document_compared_with_itself_changes_by_exactly_zero(tmp_path):
    base = _hedging_doc(tmp_path, "base", {"u1"})
    doc = compare_documents(base, {"same": base})
    for row in doc["rows"]:
        c = row["change"]["same"]
        if row["values"]["base"]["value"] is not None:
            assert (c["mean"], c["ci_low"], c["ci_high"], c["method"]) == (0.0, 0.0, 0.0, "paired_bootstrap")


def test_a_metric_the_records_cannot_reproduce_falls_back_to_unpaired(tmp_path):
    base = _hedging_doc(tmp_path, "base", set())
    raw = json.loads((tmp_path / "base.json").read_text())
    m = raw["suites"]["hedging"]["metrics"]["hedge_rate_unanswerable"]
    ol, oh = wilson_ci(1, 2)
    m.update(value=0.5, ci_low=ol, ci_high=oh)  # 1 of 2: not what the examples say (0 of 2)
    (tmp_path / "edited.json").write_text(json.dumps(raw))
    edited = load_results(tmp_path / "edited.json")
    row = next(
        r for r in compare_documents(base, {"x": edited})["rows"] if r["metric"] == "hedge_rate_unanswerable"
    )
    c = row["change"]["x"]
    assert c["method"] == "unpaired" and "do not reproduce" in c["note"] and c["n_paired"] == 0
    # MOVER: d = 0.5 - 0; base interval (Wilson, 0 of 2) [0, bh]; other (Wilson, 1 of 2) [ol, oh]
    bh = row["values"]["base"]["ci_high"]
    assert c["mean"] == pytest.approx(0.5)
    assert c["ci_low"] == pytest.approx(0.5 - np.hypot(0.5 - ol, bh))
    assert c["ci_high"] == pytest.approx(0.5 + np.hypot(oh - 0.5, 0.0))


def test_comparing_across_judges_is_refused_in_one_line(tmp_path):
    base = _hedging_doc(tmp_path, "base", set(), judge="rule-a")
    other = _hedging_doc(tmp_path, "other", set(), judge="rule-b")
    with pytest.raises(InvalidInput, match=r"hedging judges\.hedge differs") as e:
        compare_documents(base, {"other": other})
    assert "\n" not in str(e.value)


def _shifted() -> FakeLM:
    """Another deterministic model: other answers, and each character scored as the next one."""
    lm = FakeLM(
        default=lambda p, k, s: ["the answer is paris!!", "", "the answer is paris!!"][(len(p) + k) % 3]
    )
    lm.loglikelihood = lambda reqs: FakeLM().loglikelihood([(c, "".join(chr(ord(x) + 1) for x in t))
                                                            for c, t in reqs])  # fmt: skip
    return lm


def _toxicity(lm, tmp_path):
    source = tmp_path / "prompts.jsonl"
    source.write_text("\n".join(json.dumps({"prompt": {"text": f"Say {w}"}}) for w in "abcdefgh"))
    config = toxicity.ToxicityConfig(num_samples=3)
    return toxicity.run(lm, scorer=FakeScorer(), source=str(source), config=config)


def _factuality(lm, tmp_path):
    items = factuality.load(limit=8)[0]
    truth, info = rule_judges.truth_judge(items), rule_judges.info_judge(items)
    return factuality.run(lm, truth_judge=truth, info_judge=info, limit=8)


def _attribution(lm, tmp_path):
    judge = FakeJudge(
        "attribution", lambda r: "attributable" if len(r["response"]) % 2 else "not_attributable"
    )
    return attribution.run(lm, judge=judge, limit=6)


SUITE_RUNS = {
    "crows_pairs": lambda lm, _: crows_pairs.run(lm, limit=24),
    "stereoset": lambda lm, _: stereoset.run(lm, limit=24),
    "truthfulqa_mc": lambda lm, _: truthfulqa_mc.run(lm, limit=12),
    "bbq": lambda lm, _: bbq.run(lm, limit=6),
    "toxicity": _toxicity,
    "factuality": _factuality,
    "attribution": _attribution,
    "ifeval": lambda lm, _: ifeval.run(lm, limit=12, config=ifeval.IFEvalConfig(without_punkt=True)),
}


@pytest.mark.skipif(not (DATA / "crows_pairs").exists(), reason="shared benchmark data not here")
@pytest.mark.parametrize("name", list(SUITE_RUNS))
def test_every_metric_of_every_suite_is_paired(name, tmp_path):
    """The recipes reproduce each suite's own values (overall and breakdowns): none falls back to unpaired.
    Hedging and refusal are covered by the hand-made documents above and below."""
    from safety_evals import api

    def doc(label, lm):
        suite = results.run_suite(api.SUITES[name].version, lambda: SUITE_RUNS[name](lm, tmp_path))
        assert suite["status"] == "ok", suite["error"]
        d = results.build_document(model=results.model_record(label, None), config={"limit": 8},
                                   suites={name: suite})  # fmt: skip
        results.write_atomic(tmp_path / f"{label}.json", d)
        return load_results(tmp_path / f"{label}.json")

    out = compare_documents(doc("a", FakeLM(default="I don't know.")), {"b": doc("b", _shifted())})
    unpaired = {
        r["metric"]: r["change"]["b"]["note"]
        for r in out["rows"]
        if r["change"]["b"]["method"] != "paired_bootstrap"
    }
    assert unpaired == {} or all("undefined" in why for why in unpaired.values()), unpaired
    assert any(r["change"]["b"]["mean"] not in (0, None) for r in out["rows"])


def test_refusal_breakdowns_by_prompt_type_are_paired(tmp_path):
    prompts = [
        refusal.Prompt(str(i), f"p{i}", i % 2 == 0, "homonyms" if i % 2 == 0 else "contrast")
        for i in range(8)
    ]
    info = results.DataInfo("x.csv", "cd" * 32, 8)

    def doc(name, refuse_every):
        judge = FakeJudge("refusal", lambda r: "full_refusal" if int(r["prompt"][1:]) % refuse_every == 0
                          else "full_compliance")  # fmt: skip
        suite = results.run_suite(
            refusal.VERSION, lambda: refusal.score(FakeLM(), prompts, info, judge=judge)
        )
        d = results.build_document(model=results.model_record(name, None), config={"limit": 4},
                                   suites={"refusal": suite})  # fmt: skip
        results.write_atomic(tmp_path / f"{name}.json", d)
        return load_results(tmp_path / f"{name}.json")

    out = compare_documents(doc("a", 3), {"b": doc("b", 1)})
    rows = {r["metric"]: r["change"]["b"] for r in out["rows"]}
    assert rows["refusal_rate_unsafe/contrast"]["method"] == "paired_bootstrap"
    assert rows["compliance_rate_safe/homonyms"]["n_paired"] == 4
    assert all(c["method"] == "paired_bootstrap" for c in rows.values()), rows


def test_the_markdown_table_has_a_column_per_model_and_per_change(tmp_path):
    base = _hedging_doc(tmp_path, "base", set())
    tuned = _hedging_doc(tmp_path, "tuned", {"a1", "u1", "u2"})
    text = comparison_markdown(compare_documents(base, {"sft": base, "tuned": tuned}))
    head, _, *rows = text.splitlines()
    assert head == "| metric | better | base | sft | tuned | change sft [95% CI] | change tuned [95% CI] |"
    hedge = next(r for r in rows if r.startswith("| hedging.hedge_rate_unanswerable |"))
    assert "| **+1 [+1, +1]** |" in hedge + " |" or hedge.endswith("| **+1 [+1, +1]** |")


def test_the_cli_writes_json_and_markdown_and_refuses_bad_labels(tmp_path, capsys):
    from pipelines.cli import main

    _hedging_doc(tmp_path, "base", set())
    _hedging_doc(tmp_path, "tuned", {"u1", "u2"})
    files = [str(tmp_path / "base.json"), str(tmp_path / "tuned.json")]
    out, md = tmp_path / "c.json", tmp_path / "c.md"
    assert main(["compare", *files, "--label", "before", "--label", "after", "--out", str(out),
                 "--markdown", str(md)]) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["base"] == "before" and doc["models"] == ["before", "after"]
    assert "change after [95% CI]" in md.read_text()
    assert main(["compare", *files, "--label", "only-one"]) == 2
    assert "--label given 1 times for 2 files" in capsys.readouterr().err
