"""The one stop rule of every generation (`protocol.truncate_at_stop`): stop strings end an answer only
past its leading whitespace; lm-eval's plain cut (`cut_at_stop`) for the lm-eval model."""

import pytest

from align.data.selfaware import QAItem
from safety_evals.lm.protocol import cut_at_stop, truncate_at_stop
from safety_evals.results import DataInfo
from safety_evals.suites import attribution, factuality, hedging
from tests.safety_evals.fakes import FakeJudge, FakeLM

OPENS_BLANK = "\n\nThe answer.\n\nMore"


@pytest.mark.parametrize(
    "text, stop, want",
    [
        (OPENS_BLANK, ("\n\n",), "\n\nThe answer."),  # the blank opening is not a stop
        ("\n\n\n", ("\n\n",), "\n\n\n"),  # nothing but blank lines: never cut, strips to ""
        (" \t\n", ("\n",), " \t\n"),
        ("\n\nQ: next", ("\nQ:",), "\n"),  # a stop covering the first word still ends the answer
        ("Paris.\n\nQ: x", ("\nQ:", "\n\n"), "Paris."),  # the earliest stop, whatever its order
        ("Paris.\nQ: x\n\n", ("\n\n", "\nQ:"), "Paris."),
        ("  Paris. Q: x", ("Q:",), "  Paris. "),  # leading spaces kept: suites strip
        ("Paris.\n\nRome", (), "Paris.\n\nRome"),  # no stop strings: unchanged
        ("Paris.\n\nRome", ("",), "Paris.\n\nRome"),  # an empty stop string is ignored
        ("", ("\n\n",), ""),
    ],
)
def test_truncate_at_stop(text, stop, want):
    assert truncate_at_stop(text, stop) == want


def test_cut_at_stop_is_lm_evals_split():
    def lm_eval(s, until):  # HFLM.generate_until, lm-eval 0.4.x
        for term in until:
            if len(term) > 0:
                s = s.split(term)[0]
        return s

    for text in (OPENS_BLANK, "\n\n\n", "Paris.\nQ: x\n\n", "a b"):
        for until in (("\n\n",), ("\nQ:", "\n\n"), ("\n\n", "\nQ:"), ("",), ()):
            assert cut_at_stop(text, until) == lm_eval(text, until)
    assert cut_at_stop(OPENS_BLANK, ("\n\n",)) == ""  # where our rule keeps the answer


def test_attribution_answer_after_blank_lines():
    items = [attribution.BeginItem("1", "the answer lives here", "hi", "r", 1),
             attribution.BeginItem("2", "k", "yo", "r", 0)]  # fmt: skip
    prompt = lambda i: attribution.GROUNDED_PROMPT.format(passage=i.knowledge, message=i.message)  # noqa: E731
    lm = FakeLM(responses={prompt(items[0]): OPENS_BLANK, prompt(items[1]): "\n\n\n"})
    assert attribution.grounded_answers(lm, items, attribution.AttributionConfig()) == ["The answer.", ""]
    assert lm.gen_calls[0]["stop"] == ("\n\n",)


def test_factuality_and_hedging_answers_after_blank_lines():
    # each suite's own stop strings ("\n\n", "\nQ:") through the same rule, judges see the answer
    lm = FakeLM(responses={factuality.qa_prompt("q1"): "\n\nThe answer.\nQ: next"}, default="\n\n\n")
    items = [factuality.GenItem("q1", ("a",), ("b",)), factuality.GenItem("q2", ("a",), ("b",))]
    truth, info = FakeJudge("truth", lambda r: "true"), FakeJudge("info", lambda r: "informative")
    factuality.score_generation(lm, items, DataInfo("s", "", 2), truth_judge=truth, info_judge=info)
    assert [r["answer"] for r in truth.calls[0]] == ["The answer.", ""]
    qs = [QAItem("1", "q1", True, ("x",)), QAItem("2", "q2", False)]
    lm = FakeLM(responses={hedging.PROMPT.format(question="q1"): OPENS_BLANK}, default="\n\n\n")
    judge = FakeJudge("hedge", lambda r: "answer")
    hedging.score(lm, qs, DataInfo("s", "", 2), judge=judge)
    assert [r["answer"] for r in judge.calls[0]] == ["The answer.", ""]


def test_lm_eval_model_keeps_lm_evals_cut():
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from safety_evals.lm.lm_eval_model import AlignLM

    lm = FakeLM(default=OPENS_BLANK)
    kwargs = {"until": ["\n\n"], "max_gen_toks": 8}
    reqs = [Instance("generate_until", {}, ("p", dict(kwargs)), 0)]
    assert AlignLM(lm=lm).generate_until(reqs) == [""]  # as HFLM: split at the first "\n\n"
    assert lm.gen_calls[0]["stop"] == ()  # JaxLM's rule is not applied first
    reqs = [Instance("generate_until", {}, ("p", {"max_gen_toks": 8}), 0)]
    assert AlignLM(lm=lm).generate_until(reqs) == [OPENS_BLANK]
