"""Reward-model rewards for RL: closing sampled responses as chat turns, scores equal the model's own."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from pipelines.rewards import RewardModelSpec, RewardOptions, RuleSpec, ScoreModelReward, close_turn

EOT, NL, EOS = 6, 17, 1


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
    prompt = jnp.array([[2, 5, 7], [2, 9, 0]])
    prompt_mask = jnp.array([[1, 1, 1], [1, 1, 0]])
    response = jnp.array([[11, EOT, 0], [12, 13, 14]])
    response_mask = jnp.array([[1, 1, 0], [1, 1, 1]])
    fn = ScoreModelReward(model, shift=0.5, scale=2.0, turn_end=(EOT, NL), stop_ids=(EOS, EOT))
    got = fn(prompt, prompt_mask, response, response_mask)

    @nnx.jit
    def by_hand(model, row):
        """The reward model on one unpadded row: its score at the last token."""
        return model(row[None], jnp.arange(row.shape[0])[None], jnp.ones_like(row)[None])[0]

    rows = [[2, 5, 7, 11, EOT, NL], [2, 9, 12, 13, 14, EOT, NL]]
    for b, row in enumerate(rows):
        expect = float(by_hand(model, jnp.asarray(row)))
        assert float(got[b]) == pytest.approx((expect - 0.5) / 2.0, abs=1e-5)
    raw = ScoreModelReward(model)(prompt, prompt_mask, response, response_mask)  # no closing: as sampled
    assert float(raw[0]) == pytest.approx(float(by_hand(model, jnp.asarray([2, 5, 7, 11, EOT]))), abs=1e-5)


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
    from pipelines.rl_eval import paired_gain

    g = paired_gain([0.0, 1.0, 2.0], [1.0, 1.0, 4.0])  # differences 1, 0, 2
    assert g["mean"] == 1.0 and g["n"] == 3 and g["wins"] == 2 / 3
    assert g["stderr"] == pytest.approx(1.0 / 3**0.5)  # sample std of (1, 0, 2) is 1
    assert g["ci_low"] == pytest.approx(1.0 - 1.96 / 3**0.5)
