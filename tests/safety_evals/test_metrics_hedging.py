"""SelfAware hedging: hand-computed metrics, constant policies at chance, loader, suite on fakes."""

import numpy as np
import pytest

from safety_evals.suites import hedging
from tests.safety_evals.fakes import FakeJudge, FakeLM, table_judge


def test_metrics_by_hand():
    answerable = np.array([True, True, True, False, False])
    hedged = np.array([False, True, False, True, False])
    m = hedging.metrics(answerable, hedged)
    assert m["hedge_rate_unanswerable"].value == pytest.approx(1 / 2)
    assert m["false_hedge_rate_answerable"].value == pytest.approx(1 / 3)
    assert m["hedging_balanced_accuracy"].value == pytest.approx((1 / 2 + 1 - 1 / 3) / 2)
    assert m["hedge_rate_unanswerable"].n == 2 and m["false_hedge_rate_answerable"].n == 3
    assert m["false_hedge_rate_answerable"].higher_is_better is False
    assert "hedging_accuracy" not in m  # a never-hedging model reached 0.69 on it


@pytest.mark.parametrize("policy", ["never", "always", "coin"])
def test_any_constant_policy_scores_chance(policy):
    # SelfAware's ratio: 2337 answerable, 1032 unanswerable
    answerable = np.array([True] * 2337 + [False] * 1032)
    rng = np.random.default_rng(0)
    hedged = {
        "never": np.zeros(3369, bool),
        "always": np.ones(3369, bool),
        "coin": rng.random(3369) < 0.3,  # hedges 30% of the time, whatever the question
    }[policy]
    m = hedging.metrics(answerable, hedged)["hedging_balanced_accuracy"]
    assert m.value == pytest.approx(0.5, abs=0.03 if policy == "coin" else 1e-12)
    assert m.ci_low < 0.5 + 0.03


def test_loader_real_file():
    qs, info = hedging.load()
    assert info.n == 3369
    assert sum(q.answerable for q in qs) == 2337
    assert info.sha256 == "32929585ffdd4048f35f7f167720722eb8ddcf59908ffc958da2f84ea634dc54"
    assert all(q.answers for q in qs if q.answerable) and not any(q.answers for q in qs if not q.answerable)
    small, _ = hedging.load(limit=3)
    assert [q.answerable for q in small] == [True] * 3 + [False] * 3


def test_suite_on_fakes():
    qs, _ = hedging.load(limit=2)
    lm = FakeLM(
        responses={hedging.PROMPT.format(question=qs[0].question): "A song.\nQ: more"},
        default="Hard to tell.",
    )
    judge = table_judge("hedge", {"A song.": "answer"}, "hedge", "answer")
    res = hedging.run(lm, judge=judge, limit=2)
    # q0 answered (right), q1 hedged although answerable (wrong), both unanswerable hedged (right)
    assert res.metrics["hedge_rate_unanswerable"].value == 1.0
    assert res.metrics["false_hedge_rate_answerable"].value == 0.5
    assert res.metrics["hedging_balanced_accuracy"].value == pytest.approx(0.75)
    assert judge.calls[0][0] == {"question": qs[0].question, "answer": "A song."}
    assert res.examples[0]["output"] == "A song." and res.examples[1]["label"] == "hedge"
    # "A song." names q0's gold alias ("song"); q1 hedged
    assert qs[0].answers == ("song",)
    assert res.metrics["answer_accuracy_answerable"].value == 0.5
    assert [e["score"] for e in res.examples] == [1.0, 0.0, 1.0, 1.0]
    assert res.judges == {"hedge": judge.identity()}


def test_closed_book_accuracy_counts_unhedged_gold_answers_on_answerable_questions():
    qs, _ = hedging.load(limit=2)
    ask = {hedging.PROMPT.format(question=q.question): q for q in qs}
    # q0 answers its gold unhedged; q1 names its gold but the judge calls it a hedge; the rest are wrong
    outs = {qs[0].question: "It is a song.", qs[1].question: f"Perhaps {qs[1].answers[0]}, hard to say."}
    lm = FakeLM(responses={p: outs.get(q.question, "Paris.") for p, q in ask.items()})
    judge = table_judge("hedge", {f"Perhaps {qs[1].answers[0]}, hard to say.": "hedge"}, "answer", "answer")
    res = hedging.run(lm, judge=judge, limit=2)
    assert res.metrics["answer_accuracy_answerable"].value == 0.5  # 1 of the 2 answerable questions
    assert res.metrics["answer_accuracy_answerable"].n == 2


def test_a_judge_of_another_role_is_refused():
    with pytest.raises(ValueError, match="expected role 'hedge'"):
        hedging.run(FakeLM(), judge=FakeJudge("truth", lambda r: "true"), limit=1)
