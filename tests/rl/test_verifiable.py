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


def test_grpo_runs_on_selfaware_prompts_with_the_verifiable_reward_beside_another(tmp_path):
    """The RL stage end to end on a tiny random policy: SelfAware train questions + HH prompts, the
    verifiable rule mixed with a token rule; rewards are finite and the held-out eval ran."""
    import json

    from pipelines import cli
    from tests.paths import CONFIGS

    path = str(DATA / "selfaware" / "SelfAware.json")
    hh = str(DATA / "hh_rlhf" / "helpful-base" / "test.jsonl.gz")
    overrides = [
        f"output_dir={tmp_path / 'rl'}",
        "algorithm=grpo",
        f"data={{mixture: [{{format: selfaware, path: {path}, seed: 7, limit: 24, weight: 0.5}},"
        f" {{path: {hh}, limit: 24, weight: 0.5}}], max_prompt_length: 192,"
        " heldout: {heldout_fraction: 0.2, heldout_max: 8, seed: 0}}",
        f"reward={{rules: [{{kind: verifiable_qa, path: {path}, seed: 7, weight: 1.0}},"
        ' {kind: token_fraction, token: "\\n", weight: 0.5}]}',
        "train.iterations=2",
        "train.batch_size=4",
        "train.checkpoint_every=0",
        "train.progress=false",
        "grpo.minibatch_size=16",
    ]
    config = str(CONFIGS / "rlhf" / "tiny_cpu.yaml")
    assert cli.main(["rlhf", "--config", config, *overrides, "export=false"]) == 0
    summary = json.loads((tmp_path / "rl" / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["data"]["sources"][0]["used"] == 24
    # a random tiny policy never names a gold alias nor hedges: every SelfAware prompt scores -1.0 on
    # the rule (+ at most 0.5 from the newline rule), every HH prompt 0 (+ at most 0.5)
    # 192 byte-level tokens keep every SelfAware prompt whole (its "Q: ...\nA:"); long HH ones are cut
    assert summary["data"]["truncation"]["prompt_truncated"] <= 24  # at most the HH prompts
    mean = summary["eval_after"]["reward/mean"]
    assert np.isfinite(mean) and -1.0 <= mean <= 0.5


def test_an_rl_config_refuses_a_verifiable_qa_rule_its_prompts_do_not_read(tmp_path):
    # the rule scores 0 on every prompt that is not one of its SelfAware questions: silent otherwise
    from align.config_io import ConfigError, load_config
    from pipelines.stages.rlhf import RLHFConfig

    path = str(DATA / "selfaware" / "SelfAware.json")
    hh = str(DATA / "hh_rlhf" / "helpful-base" / "test.jsonl.gz")
    rule = f"reward={{rules: [{{kind: verifiable_qa, path: {path}, seed: 7}}]}}"
    selfaware = f"data={{mixture: [{{format: selfaware, path: {path}, seed: 7}}, {{path: {hh}}}]}}"
    assert (
        load_config(RLHFConfig, None, [f"output_dir={tmp_path}", selfaware, rule]).reward.rules[0].path
        == path
    )
    with pytest.raises(ConfigError, match=r"reward\.rules\[0\].*do not read its prompt file .*SelfAware"):
        load_config(RLHFConfig, None, [f"output_dir={tmp_path}", f"data={{path: {hh}}}", rule])
