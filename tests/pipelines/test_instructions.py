"""Verifiable-instruction prompts and their reward: lm-eval's checkers decide, IFEval stays held out."""

import json
import random

import numpy as np
import pytest

from align.data import Tokenizer
from align.data.testing import tiny_tokenizer
from align.errors import InvalidInput
from align.sampling.text import encode_texts
from pipelines.stages import instructions as ins
from pipelines.stages.rewards import RewardOptions, RuleSpec, build_reward

TOK = Tokenizer(tiny_tokenizer())
END = "Is there anything else I can help with?"


def _row(key, ids, kwargs, constraint):
    return {
        "key": key,
        "prompt": f"Tell me about cats.\n\n{constraint}",
        "constraint": constraint,
        "instruction_id_list": ids,
        "kwargs": kwargs,
    }


WORDS = {"relation": "less than", "num_words": 6}
ROWS = [
    _row(0, ["punctuation:no_comma"], [{}], "Do not use any commas."),
    _row(1, ["change_case:english_lowercase"], [{}], "Answer in lowercase letters only."),
    _row(2, ["length_constraints:number_words"], [WORDS], "Use < 6 words."),
    _row(3, ["detectable_format:json_format"], [{}], "Wrap the whole answer in JSON."),
    _row(4, ["startend:end_checker"], [{"end_phrase": END}], f"End with '{END}'"),
    _row(5, ["keywords:existence", "punctuation:no_comma"], [{"keywords": ["whisker"]}, {}], "Say whisker."),
]

CASES = [  # (row, response, reward)
    (0, "Cats purr and sleep a lot.", 1.0),
    (0, "Cats purr, and sleep a lot.", 0.0),
    (1, "cats are small furry animals that like to sleep in the sun all day long.", 1.0),
    (1, "Cats are small furry animals that like to sleep in the sun all day long.", 0.0),
    (2, "Cats purr.", 1.0),
    (2, "Cats purr and sleep all day long.", 0.0),
    (3, '{"cats": ["purr", "sleep"]}', 1.0),
    (3, "Cats purr.", 0.0),
    (4, f"Cats purr. {END}", 1.0),
    (4, f"{END} Cats purr.", 0.0),
    (5, "A cat has a whisker on each side.", 1.0),
    (5, "A cat has a whisker, on each side.", 0.0),  # one of two instructions broken
    (5, "A cat has fur.", 0.0),
]


def _batch(rows_and_responses):
    prompts = encode_texts(TOK, [row["prompt"] for row, _ in rows_and_responses], chat=True)
    responses = [TOK.encode(r) + [TOK.end_of_turn_id] for _, r in rows_and_responses]

    def pad(seqs):
        width = max(map(len, seqs))
        arr = np.zeros((len(seqs), width), np.int32)
        mask = np.zeros_like(arr)
        for i, s in enumerate(seqs):
            arr[i, : len(s)], mask[i, : len(s)] = s, 1
        return arr, mask

    return (*pad(prompts), *pad(responses))


def test_reward_is_the_checker_verdict_on_hand_made_cases():
    reward = ins.InstructionReward(ROWS, TOK)
    scores = reward(*_batch([(ROWS[i], text) for i, text, _ in CASES]))
    assert np.asarray(scores).tolist() == [r for _, _, r in CASES]


def test_the_longest_constraint_found_in_the_prompt_decides_and_a_plain_prompt_has_no_row():
    short = _row(
        7, ["length_constraints:number_words"], [{"relation": "at least", "num_words": 15}], "At least 15"
    )
    long = _row(
        8, ["length_constraints:number_words"], [{"relation": "at least", "num_words": 154}], "At least 154"
    )
    reward = ins.InstructionReward([short, long], TOK)
    assert reward.row_of("user\nTell me.\n\nAt least 154\nmodel\n") is long
    assert reward.row_of("user\nTell me.\n\nAt least 15\nmodel\n") is short
    assert reward.row_of("user\nTell me.\nmodel\n") is None


def test_a_mixed_batch_scores_the_constraint_on_instruction_prompts_and_0_on_plain_ones(tmp_path):
    path = tmp_path / "instructions.jsonl"
    ins.write_rows(ROWS, path)
    options = RewardOptions(
        rules=(RuleSpec(kind="instructions", path=str(path), weight=2.0), RuleSpec(kind="length", target=4))
    )
    reward = build_reward(options, TOK)
    plain = {"prompt": "Tell me about dogs."}  # an HH prompt of the mixture: no constraint
    batch = _batch([(ROWS[0], "Cats purr."), (ROWS[0], "Cats purr, a lot."), (plain, "Dogs bark.")])
    n = batch[3].sum(axis=1)  # response tokens, <end_of_turn> included
    length = -np.abs(n - 4) / 4
    # followed: 2 x 1; broken (a comma): 2 x 0; plain: 0, though "Dogs bark." has no comma either
    expected = [2.0 + length[0], 0.0 + length[1], 0.0 + length[2]]
    np.testing.assert_allclose(np.asarray(reward(*batch)), expected, rtol=1e-6)
    assert len(set(n.tolist())) > 1  # the length term differs per row: each row's own sum is checked


def test_rows_are_deterministic_and_their_kwargs_rebuild_their_constraints():
    from lm_eval.tasks.ifeval import instructions_registry as registry

    ids = ins.instruction_ids(without_punkt=True)
    qs = ["How do I bake bread?", "What is a good name for a dog?", "Why is the sky blue?"] * 4
    state = random.getstate()
    rows = ins.build_rows(qs, ids, seed=3)
    assert random.getstate() == state  # lm-eval's global random is restored
    assert rows == ins.build_rows(qs, ids, seed=3) and rows != ins.build_rows(qs, ids, seed=4)
    for row, q in zip(rows, qs):
        assert row["prompt"] == f"{q}\n\n{row['constraint']}" and 1 <= len(row["instruction_id_list"]) <= 2
        texts = []
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"]):
            inst = registry.INSTRUCTION_DICT[iid](iid)
            texts.append(inst.build_description(**kw))
        assert " ".join(texts) == row["constraint"]
        json.dumps(row)  # writable as JSONL


def test_training_prompts_are_disjoint_from_ifeval_on_the_real_files(tmp_path):
    qs = ins.questions()
    assert len(qs) > 2000  # HH helpful-base test: 2354 dialogues
    rows = ins.build_rows(qs, ins.instruction_ids(without_punkt=True))
    ins.check_disjoint(rows, qs)
    with open(ins.IFEVAL) as f:
        held_out = json.loads(f.readline())["prompt"]
    leaked = ins.build_rows([held_out], ins.instruction_ids(without_punkt=True))
    with pytest.raises(InvalidInput, match="overlaps an IFEval prompt"):
        ins.check_disjoint(rows[:5] + leaked, qs[:5] + [held_out])


def test_the_instructions_rule_is_registered_in_the_reward_section(tmp_path):
    path = tmp_path / "instructions.jsonl"
    ins.write_rows(ROWS, path)
    options = RewardOptions(rules=(RuleSpec(kind="instructions", path=str(path)),))
    reward = build_reward(options, TOK)
    assert isinstance(reward, ins.InstructionReward) and reward.by_constraint == {
        r["constraint"]: r for r in ROWS
    }
    assert options.describe() == [{"name": "rule:instructions", "weight": 1.0, "source": str(path)}]


def test_an_rl_config_refuses_an_instructions_rule_without_a_prompt_file_or_not_trained_on(tmp_path):
    from align.config_io import ConfigError, load_config
    from pipelines.stages.rlhf import RLHFConfig

    prompts = tmp_path / "instructions.jsonl"
    ins.write_rows(ROWS, prompts)
    good = {"output_dir": str(tmp_path), "data": {"path": str(prompts)}}
    rule = {"kind": "instructions", "path": str(prompts)}
    assert load_config(RLHFConfig, None, [f"{k}={json.dumps(v)}" for k, v in good.items()] + [
        f"reward.rules=[{json.dumps(rule)}]"
    ]).reward.rules[0].path == str(prompts)  # fmt: skip
    for bad, why in (
        ({"kind": "instructions"}, "needs path"),  # only `align pipeline` fills it in
        ({**rule, "path": str(tmp_path / "other.jsonl")}, "do not read its prompt file"),  # scores 0 always
    ):
        config = tmp_path / "rlhf.yaml"
        config.write_text(json.dumps({**good, "reward": {"rules": [bad]}}))
        with pytest.raises(ConfigError, match=rf"rlhf\.yaml.*reward\.rules\[0\].*{why}"):
            load_config(RLHFConfig, config)


def test_the_prompt_file_is_written_whole_and_its_rows_are_chat_prompts(tmp_path, monkeypatch):
    from pipelines.stages.rl_data import PromptSource, mix_sources

    path = tmp_path / "instructions" / "prompts.jsonl"
    rows = ins.write_prompt_file(path, limit=12)
    assert ins.read_rows(path) == rows and len(rows) == 12
    assert [p.name for p in path.parent.iterdir()] == ["prompts.jsonl"]  # no temp file left
    ins.check_disjoint(rows, [r["prompt"].split("\n\n")[0] for r in rows])
    examples, _ = mix_sources([PromptSource(str(path))], skip_invalid=False)
    assert [e.prompt for e in examples] == [[{"role": "user", "content": r["prompt"]}] for r in rows]

    dumps = json.dumps

    def crash(row, **kwargs):  # the disk fills after the first row: the last whole file stays in place
        if row is rows[1]:
            raise OSError("disk full")
        return dumps(row, **kwargs)

    monkeypatch.setattr(ins.json, "dumps", crash)
    with pytest.raises(OSError, match="disk full"):
        ins.write_rows(rows[:3], path)
    assert ins.read_rows(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["prompts.jsonl"]
