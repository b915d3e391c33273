"""Rollouts: prompt/response layout by hand, scoring == sampler, zero KL at policy == reference, rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.heads import ScoreModel
from align.rl.rewards import LengthReward, Mixture, TokenFraction, check_rewards
from align.rl.rollout import RolloutConfig, join_prompt_response, make_rollout, response_index
from align.sampling import SamplingConfig, generate

V = 32
STOP = 1


@pytest.fixture(scope="module")
def models():
    cfg = ModelConfig.tiny(vocab_size=V)
    policy = Decoder(cfg, rngs=nnx.Rngs(0))
    value = ScoreModel(Decoder(cfg, rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2))
    return policy, value


def _prompts():
    tokens = np.array([[2, 5, 6, 7], [2, 9, 0, 0], [2, 4, 4, 0]], np.int32)
    return tokens, np.array([4, 2, 3], np.int32)


def test_join_prompt_response_by_hand():
    prompt, plen = _prompts()
    response = np.array([[11, 1, 0], [12, 13, 14], [15, 0, 0]], np.int32)
    rlen = np.array([2, 3, 1], np.int32)
    tokens, positions, segments = join_prompt_response(
        jnp.asarray(prompt), jnp.asarray(plen), jnp.asarray(response), jnp.asarray(rlen)
    )
    np.testing.assert_array_equal(
        tokens, [[2, 5, 6, 7, 11, 1, 0], [2, 9, 12, 13, 14, 0, 0], [2, 4, 4, 15, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        segments, [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        positions, [[0, 1, 2, 3, 4, 5, 0], [0, 1, 2, 3, 4, 0, 0], [0, 1, 2, 3, 0, 0, 0]]
    )
    np.testing.assert_array_equal(response_index(jnp.asarray(plen), 3), [[3, 4, 5], [1, 2, 3], [2, 3, 4]])


def test_rollout_scores_match_sampler_and_zero_kl_when_policy_is_reference(models):
    policy, value = models
    prompt, plen = _prompts()
    config = RolloutConfig(
        SamplingConfig(max_new_tokens=6, temperature=0.7, stop_ids=(STOP,)), logprob_chunk=5
    )
    rng = jax.random.PRNGKey(3)
    rollout, metrics = make_rollout(policy, policy, value, TokenFraction(7), prompt, plen, config, rng)
    sampled = generate(policy, prompt, plen, config.sampling, rng)
    np.testing.assert_array_equal(rollout.response, sampled.tokens)
    m = np.asarray(rollout.response_mask)
    np.testing.assert_array_equal(m.sum(-1), sampled.lengths)
    # The training-style forward scores the sampled tokens exactly as the KV-cache decode did.
    np.testing.assert_allclose(rollout.logprobs, np.asarray(sampled.logprobs) * m, atol=2e-4)
    np.testing.assert_array_equal(rollout.logprobs, rollout.ref_logprobs)
    assert metrics["kl/ref"] == 0.0
    assert np.all(np.asarray(rollout.entropy)[m > 0] > 0)
    # has_eos <=> a stop token inside the mask; the response ends right there
    resp = np.asarray(rollout.response)
    for b in range(3):
        n = int(m[b].sum())
        assert bool(rollout.has_eos[b]) == (resp[b, n - 1] == STOP)
    # values: the critic's score at column prompt_length - 1 + j, computed on the joined rows by hand
    scores = value.token_scores(rollout.tokens, rollout.positions, rollout.segment_ids)
    for b in range(3):
        expect = np.asarray(scores[b, plen[b] - 1 : plen[b] - 1 + 6]) * m[b]
        np.testing.assert_allclose(rollout.values[b], expect, atol=1e-5)
    expect_scores = [(resp[b, : int(m[b].sum())] == 7).mean() for b in range(3)]
    np.testing.assert_allclose(rollout.scores, expect_scores, atol=1e-6)
    assert metrics["reward/mean"] == pytest.approx(np.mean(expect_scores), abs=1e-6)
    assert metrics["response/length"] == pytest.approx(m.sum(-1).mean())


def test_rule_rewards_by_hand():
    response = jnp.array([[7, 7, 3, 1], [7, 1, 0, 0], [4, 4, 4, 4]])
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]])
    p = jnp.zeros((3, 2), jnp.int32)
    np.testing.assert_allclose(TokenFraction(7)(p, p, response, mask), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(TokenFraction(7, exclude=(1,))(p, p, response, mask), [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(LengthReward(2)(p, p, response, mask), [-1.0, 0.0, -1.0])
    mix = Mixture([TokenFraction(7), LengthReward(2)], [2.0, 0.5])
    np.testing.assert_allclose(mix(p, p, response, mask), [0.5, 1.0, -0.5])
    with pytest.raises(ValueError, match="2 rewards and 1 weights"):
        Mixture([TokenFraction(7), LengthReward(2)], [1.0])


def test_check_rewards_rejects_bad_shapes_and_nan():
    with pytest.raises(ValueError, match=r"shape \(3, 1\), expected \[B\]=\(3,\)"):
        check_rewards(np.zeros((3, 1)), 3)
    with pytest.raises(ValueError, match="non-finite"):
        check_rewards(np.array([0.0, np.nan, 1.0]), 3)
