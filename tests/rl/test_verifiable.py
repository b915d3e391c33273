"""The verifiable QA reward: its ordering on hand-made answers, the RewardFn on token arrays (tiny
tokenizer, chat-templated SelfAware prompts), and its weight in a mixture with another reward."""

import numpy as np
import pytest

from align.data import Tokenizer, prompt_batch
from align.data.prompts import encode_prompt
from align.data.selfaware import QA_PROMPT, QAItem
from align.data.testing import tiny_tokenizer
from align.rl.verifiable import QAScores, VerifiableQAReward, score_answer
from pipelines.stages.rewards import RewardOptions, RuleSpec, build_reward
from tests.paths import DATA

HAMLET = QAItem("1", "Who wrote Hamlet?", True, ("william shakespeare", "shakespeare"))
FUTURE = QAItem("2", "What will the weather be like in the year 3000?", False)


def test_gold_beats_hedge_on_unanswerable_beats_hedge_on_answerable_beats_wrong():
    gold = score_answer("It was William Shakespeare.", HAMLET)
    hedge_unanswerable = score_answer("Nobody knows the answer to that.", FUTURE)
    hedge_answerable = score_answer("I don't know.", HAMLET)
    wrong = score_answer("Christopher Marlowe.", HAMLET)
    hallucination = score_answer("It will be sunny.", FUTURE)
    assert (gold, hedge_unanswerable, hedge_answerable, wrong) == (1.0, 0.8, -0.1, -1.0)
    assert gold > hedge_unanswerable > hedge_answerable > wrong == hallucination
    assert score_answer("I'm not sure, maybe Shakespeare.", HAMLET) == hedge_answerable  # a hedged guess
    assert score_answer("", HAMLET) == wrong


def test_scores_must_keep_the_order():
    with pytest.raises(ValueError, match="hedging beats hallucinating"):
        QAScores(hedge_answerable=-1.0)
    with pytest.raises(ValueError):
        QAScores(hedge_unanswerable=1.0)


def rows(tok: Tokenizer, prompts, answers):
    encoded = [encode_prompt(p, tok) for p in prompts]
    batch = prompt_batch(encoded, max(len(e) for e in encoded), padding="right")
    prompt, prompt_mask = batch["tokens"], batch["segment_ids"]
    ids = [tok.encode(a) + [tok.eos_id] for a in answers]
    m = max(len(i) for i in ids) + 2
    response = np.array([i + [tok.pad_id] * (m - len(i)) for i in ids], np.int32)
    return prompt, prompt_mask, response, (response != tok.pad_id).astype(np.int32)


def chat(question: str) -> list:
    return [{"role": "user", "content": QA_PROMPT.format(question=question)}]


def test_reward_fn_finds_the_question_in_the_prompt():
    tok = Tokenizer(tiny_tokenizer())
    fn = VerifiableQAReward([HAMLET, FUTURE], tok)
    batch = rows(
        tok,
        [chat(HAMLET.question), chat(FUTURE.question), chat(HAMLET.question), "Tell me a joke."],
        ["Shakespeare wrote it.", "Nobody knows.", "Ben Jonson.", "Shakespeare."],
    )
    np.testing.assert_allclose(fn(*batch), [1.0, 0.8, -1.0, 0.0])  # an unknown prompt scores 0


def test_rule_mixes_with_the_other_rewards_by_weight():
    tok = Tokenizer(tiny_tokenizer())
    path = str(DATA / "selfaware" / "SelfAware.json")
    options = RewardOptions(
        rules=(
            RuleSpec("verifiable_qa", path=path, seed=7, weight=2.0),
            RuleSpec("length", target=4, weight=0.5),
        )
    )
    fn = build_reward(options, tok)
    qa = fn.rewards[0]
    question = next(q for q in qa.items.values() if not q.answerable).question
    batch = rows(tok, [chat(question)], ["I don't know."])
    n = int(batch[3].sum())  # response tokens, <eos> included
    assert float(fn(*batch)[0]) == pytest.approx(2.0 * 0.8 + 0.5 * -abs(n - 4) / 4)
    assert len(qa.items) == 3365 - 1010  # the train part's distinct questions only
    assert options.describe()[0] == {"name": "rule:verifiable_qa", "weight": 2.0, "source": path}
