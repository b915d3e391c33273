"""Every generation suite end to end on a real (tiny, random) model: the align decoder behind JaxLM,
a real BPE tokenizer, the Gemma chat template around each prompt, and stop strings cut inside real
generations. Each test checks that what the judge (or checker) saw is exactly what the model
generated for the suite's prompt, cut at the stop string, and that the metrics are those labels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from align.data import Tokenizer
from align.model.hf_io import load_hf_dir
from safety_evals.lm.jax_lm import JaxLM
from safety_evals.lm.protocol import truncate_at_stop
from safety_evals.lm.wrappers import ChatPromptLM, chat_user_turn
from safety_evals.suites import attribution, factuality, hedging, ifeval, refusal
from tests.paths import DATA
from tests.safety_evals.fakes import FakeJudge, save_pretrained, tiny_gemma3, tiny_tokenizer

NEW = 10  # new tokens per answer: enough text for a stop string to fall inside


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    tok = tiny_tokenizer()
    path = save_pretrained(
        tiny_gemma3(len(tok), seed=5, max_positions=2048), tok, tmp_path_factory.mktemp("tiny")
    )
    lm = JaxLM(load_hf_dir(path), Tokenizer(tok), name="tiny", batch_size=4, max_length=2048)
    return ChatPromptLM(lm, chat_user_turn)


def _stop_inside(lm, prompt: str) -> str:
    """Two characters from the middle of the model's raw answer to `prompt`: a stop string the
    generation is sure to meet, so the cut is exercised on real output."""
    raw = lm.generate([prompt], max_new_tokens=NEW)[0][0]
    assert len(raw) >= 4, raw
    k = len(raw) // 2
    return raw[k : k + 2]


def _expected(lm, prompts, stop) -> list[str]:
    """What the suite must have recorded: the model's generation for each prompt, cut at `stop`."""
    raw = lm.generate(prompts, max_new_tokens=NEW)
    return [truncate_at_stop(r[0], stop) for r in raw]


def _labelled(role: str, label_of):
    return FakeJudge(role, label_of)


def test_factuality(chat_lm):
    gen, _, _ = factuality.load(limit=2)
    prompts = [factuality.qa_prompt(it.question) for it in gen]
    stop = (_stop_inside(chat_lm, prompts[0]),)
    truth = _labelled("truth", lambda r: "true" if len(r["answer"]) % 2 else "false")
    info = _labelled("info", lambda r: "informative")
    res = factuality.run(
        chat_lm,
        truth_judge=truth,
        info_judge=info,
        limit=2,
        config=factuality.FactualityConfig(max_new_tokens=NEW, stop=stop),
    )
    answers = [a.strip() for a in _expected(chat_lm, prompts, stop)]
    assert [r["answer"] for r in truth.calls[0]] == answers
    assert all(stop[0] not in a for a in answers)
    want = np.mean([len(a) % 2 == 1 for a in answers])
    assert res.metrics["truthful_informative_rate"].value == pytest.approx(want)
    assert res.metrics["mc1"].n == 2 and 0 < res.metrics["mc2"].value < 1  # real log-likelihoods


def test_hedging(chat_lm):
    qs, _ = hedging.load(limit=1)
    prompts = [hedging.PROMPT.format(question=q.question) for q in qs]
    stop = (_stop_inside(chat_lm, prompts[1]),)
    judge = _labelled("hedge", lambda r: "hedge")
    res = hedging.run(
        chat_lm, judge=judge, limit=1, config=hedging.HedgingConfig(max_new_tokens=NEW, stop=stop)
    )
    answers = [a.strip() for a in _expected(chat_lm, prompts, stop)]
    assert [r["answer"] for r in judge.calls[0]] == answers and any(answers)
    assert res.metrics["hedging_balanced_accuracy"].value == 0.5  # hedging everything is chance


def test_refusal(chat_lm):
    prompts, _ = refusal.load(limit=1)
    stop = (_stop_inside(chat_lm, prompts[0].prompt),)
    judge = _labelled("refusal", lambda r: "full_refusal")
    res = refusal.run(
        chat_lm, judge=judge, limit=1, config=refusal.RefusalConfig(max_new_tokens=NEW, stop=stop)
    )
    got = [r["completion"] for r in judge.calls[0]]
    assert got == [c.strip() for c in _expected(chat_lm, [p.prompt for p in prompts], stop)]
    assert (
        res.metrics["refusal_rate_unsafe"].value == 1.0 and res.metrics["compliance_rate_safe"].value == 0.0
    )


def test_ifeval(chat_lm):
    items, _ = ifeval.load(limit=2)
    stop = (_stop_inside(chat_lm, items[1].prompt),)
    res = ifeval.run(chat_lm, limit=2, config=ifeval.IFEvalConfig(max_new_tokens=NEW, stop=stop))
    outs = _expected(chat_lm, [it.prompt for it in items], stop)
    assert [e["output"] for e in res.examples] == outs
    # the scores are the checkers' verdicts on exactly those outputs
    want = [all(ifeval.follows(it, o)[0]) for it, o in zip(items, outs)]
    assert res.metrics["prompt_level_strict_acc"].value == pytest.approx(np.mean(want))


def test_attribution(chat_lm):
    source = str(DATA / "attribution/begin/wow/begin_dev_wow.tsv")
    items, _ = attribution.load(source, limit=2)
    prompts = [attribution.GROUNDED_PROMPT.format(passage=it.knowledge, message=it.message) for it in items]
    stop = (_stop_inside(chat_lm, prompts[0]),)
    judge = _labelled("attribution", lambda r: "attributable")
    res = attribution.run(
        chat_lm,
        judge=judge,
        source=source,
        limit=2,
        config=attribution.AttributionConfig(max_new_tokens=NEW, stop=stop),
    )
    answers = [a.strip() for a in _expected(chat_lm, prompts, stop)]
    assert [e["output"] for e in res.examples] == answers
    # the judge sees the answers that are neither empty, a copy, nor generic (no word of the passage)
    judged = [
        a
        for a, it in zip(answers, items)
        if a and not attribution.is_copy(a, it.knowledge) and attribution.shares_content(a, it.knowledge)
    ]
    # a random tiny model's words are rarely the passage's: every answer gets its category by the rule
    # (the judge's own path is tested on fakes in test_attribution.py)
    want = [
        "not_attributable" if not a else "copy" if attribution.is_copy(a, it.knowledge)
        else "attributable" if a in judged else "generic"
        for a, it in zip(answers, items)
    ]  # fmt: skip
    assert [e["label"] for e in res.examples] == want
    assert [r["response"] for r in (judge.calls[0] if judge.calls else [])] == judged
    assert res.metrics["ais"].value == pytest.approx(len(judged) / 2)


def test_toxicity(chat_lm):
    from safety_evals.suites import toxicity
    from tests.safety_evals.fakes import FakeScorer

    prompts, _ = toxicity.load(limit=2)
    config = toxicity.ToxicityConfig(num_samples=3, max_new_tokens=NEW, seed=4)
    scorer = FakeScorer()
    res = toxicity.run(chat_lm, scorer=scorer, limit=2, config=config)
    # sampled continuations: the same seed gives the same samples, and the scorer saw exactly those
    samples = chat_lm.generate(prompts, max_new_tokens=NEW, temperature=1.0, top_p=0.9, num_samples=3, seed=4)
    worst = [max(s, key=lambda t: scorer.score([t])[0]) for s in samples]
    assert [e["output"] for e in res.examples] == worst
    assert len({t for s in samples for t in s}) > 1  # sampling, not a constant
