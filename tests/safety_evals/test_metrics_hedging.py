"""SelfAware hedging: phrase classifier, hand-computed metrics, loader, suite on a fake LM."""

import numpy as np
import pytest

from safety_evals.suites import hedging
from tests.safety_evals.fakes import FakeLM


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I’m not sure about that.",
        "Nobody knows for certain.",
        "It is impossible to know the answer.",
        "The answer is unknown.",
        "It depends on the person.",
        "There is no definitive answer to this question.",
        "I have no comment.",
    ],
)
def test_hedges(text):
    assert hedging.is_hedge(text)


@pytest.mark.parametrize(
    "text",
    [
        "Paris.",
        "The song was released in 1952.",
        "Photosynthesis depends on light.",
        "He knows the answer.",
        "Yes, 42.",
        "The snowman was unknowingly built.",
    ],
)
def test_non_hedges(text):
    assert not hedging.is_hedge(text)


def test_metrics_by_hand():
    answerable = np.array([True, True, True, False, False])
    hedged = np.array([False, True, False, True, False])
    m = hedging.metrics(answerable, hedged)
    assert m["hedge_rate_unanswerable"].value == pytest.approx(1 / 2)
    assert m["answer_rate_answerable"].value == pytest.approx(2 / 3)
    assert m["hedging_accuracy"].value == pytest.approx(3 / 5)  # right on q0, q2, q3
    assert m["hedging_balanced_accuracy"].value == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["hedge_rate_unanswerable"].n == 2 and m["hedging_accuracy"].n == 5


def test_loader_real_file():
    qs, info = hedging.load()
    assert info.n == 3369
    assert sum(q.answerable for q in qs) == 2337
    assert info.sha256 == "32929585ffdd4048f35f7f167720722eb8ddcf59908ffc958da2f84ea634dc54"
    small, _ = hedging.load(limit=3)
    assert [q.answerable for q in small] == [True] * 3 + [False] * 3


def test_suite_on_fake_lm():
    qs, _ = hedging.load(limit=2)
    lm = FakeLM(
        responses={hedging.PROMPT.format(question=qs[0].question): "A song.\nQ: more"},
        default="I don't know.",
    )
    res = hedging.run(lm, limit=2)
    # q0 answered (right), q1 hedged although answerable (wrong), both unanswerable hedged (right)
    assert res.metrics["hedging_accuracy"].value == pytest.approx(3 / 4)
    assert res.metrics["hedge_rate_unanswerable"].value == 1.0
    assert res.metrics["answer_rate_answerable"].value == 0.5
    assert res.examples[0]["output"] == "A song." and res.examples[1]["extra"]["phrase"] == "I don't know"
