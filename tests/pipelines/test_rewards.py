"""Reward-model rewards for RL: responses ended as the RM was trained (chat turn or <eos>), scores by hand."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from align.data import Tokenizer, encode_prompt, prompt_batch
from align.data.testing import tiny_tokenizer
from align.rl.reward_model import ResponseEnding, ScoreModelReward, close_turn
from pipelines.stages.rewards import RewardModelSpec, RewardOptions, RuleSpec

EOT, NL, EOS, SOT, M = 6, 17, 1, 5, 20
ENDING = ResponseEnding(stop_ids=(EOS, EOT), eos=(EOS,), header=(SOT, M, NL), turn_end=(EOT, NL))


def test_close_turn_by_hand():
    response = jnp.array([[11, 12, EOT, 0], [11, 12, 13, 14], [EOS, 0, 0, 0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    tokens, lengths = close_turn(response, mask, (EOS, EOT), (EOT, NL))
    np.testing.assert_array_equal(
        tokens, [[11, 12, EOT, NL, 0, 0], [11, 12, 13, 14, EOT, NL], [EOT, NL, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(lengths, [4, 6, 2])


def test_score_model_reward_reads_the_reward_model_at_the_closed_turn():
    model = ScoreModel(Decoder(ModelConfig.tiny(vocab_size=32), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    # row 0 a chat prompt (ends with the header <start_of_turn> m \n), row 1 a string prompt
    prompt = jnp.array([[2, 5, 7, SOT, M, NL], [2, 9, 0, 0, 0, 0]])
    prompt_mask = jnp.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    response = jnp.array([[11, EOT, 0], [12, 13, 14]])
    response_mask = jnp.array([[1, 1, 0], [1, 1, 1]])
    fn = ScoreModelReward(model, shift=0.5, scale=2.0, ending=ENDING)
    got = fn(prompt, prompt_mask, response, response_mask)

    @nnx.jit
    def by_hand(model, row):
        """The reward model on one unpadded row: its score at the last token."""
        return model(row[None], jnp.arange(row.shape[0])[None], jnp.ones_like(row)[None])[0]

    rows = [[2, 5, 7, SOT, M, NL, 11, EOT, NL], [2, 9, 12, 13, 14, EOS]]
    for b, row in enumerate(rows):
        expect = float(by_hand(model, jnp.asarray(row)))
        assert float(got[b]) == pytest.approx((expect - 0.5) / 2.0, abs=1e-5)
    raw = ScoreModelReward(model)(prompt, prompt_mask, response, response_mask)  # no closing: as sampled
    expect = float(by_hand(model, jnp.asarray([2, 5, 7, SOT, M, NL, 11, EOT])))
    assert float(raw[0]) == pytest.approx(expect, abs=1e-5)


def test_the_ending_follows_the_prompt_format():
    """A string prompt's response ends with <eos> (as `<bos> prompt response <eos>` RM rows do), a chat
    prompt's with <end_of_turn>\n, whichever stop token the sampler produced."""
    tok = Tokenizer(tiny_tokenizer())
    ending = ResponseEnding.of(tok)
    chat = encode_prompt([{"role": "user", "content": "hi"}], tok)
    plain = encode_prompt("hi", tok)
    batch = prompt_batch([chat, plain, plain], 24, padding="right")
    eot, eos, a = tok.end_of_turn_id, tok.eos_id, tok.encode("a")[0]
    response = jnp.array([[a, eos], [a, eot], [a, a]])  # any stop token; row 2 cut at the limit
    tokens, lengths = ending.apply(
        jnp.asarray(batch["tokens"]), jnp.asarray(batch["lengths"]), response, jnp.ones_like(response)
    )
    turn_end = tok.encode("<end_of_turn>\n")
    assert tokens[0, : int(lengths[0])].tolist() == [a, *turn_end]
    assert tokens[1, : int(lengths[1])].tolist() == [a, eos]
    assert tokens[2, : int(lengths[2])].tolist() == [a, a, eos]


def test_reward_options_describe_and_reject_unknown_rules():
    options = RewardOptions(
        models=(RewardModelSpec("runs/rm_helpful/export", 0.7),),
        rules=(RuleSpec("length", target=20, weight=0.1),),
    )
    assert options.describe() == [
        {"name": "rm_helpful", "weight": 0.7, "source": "runs/rm_helpful/export"},
        {"name": "rule:length", "weight": 0.1, "source": 20},
    ]
    with pytest.raises(ValueError, match="kind='shout'"):
        RuleSpec("shout")


def test_paired_gain_by_hand():
    from pipelines.stages.rl_eval import paired_gain

    g = paired_gain([0.0, 1.0, 2.0], [1.0, 1.0, 4.0])  # differences 1, 0, 2
    assert g["mean"] == 1.0 and g["n"] == 3 and g["wins"] == 2 / 3
    assert g["stderr"] == pytest.approx(1.0 / 3**0.5)  # sample std of (1, 0, 2) is 1
    assert g["ci_low"] == pytest.approx(1.0 - 1.96 / 3**0.5)


def test_paired_gain_of_one_or_no_prompt_leaves_undefined_fields_none_not_nan():
    import json

    from pipelines.stages.rl_eval import paired_gain

    one = paired_gain([1.0], [3.0])  # a mean, but no spread to build an interval from
    assert one == {"mean": 2.0, "stderr": None, "ci_low": None, "ci_high": None, "wins": 1.0, "n": 1}
    none = paired_gain([], [])
    assert none == {"mean": None, "stderr": None, "ci_low": None, "ci_high": None, "wins": None, "n": 0}
    json.dumps([one, none], allow_nan=False)  # summary.json stays strict JSON
