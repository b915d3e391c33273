"""KL estimators, KL controllers and KL-shaped per-token rewards."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.rl.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_k1,
    kl_k2,
    kl_k3,
    per_token_kl_penalty_rewards,
)
from align.model.heads import last_token_index

LN2 = math.log(2)


def test_estimators_by_hand():
    logp, ref = jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.25]))
    np.testing.assert_allclose(kl_k1(logp, ref), [LN2], rtol=1e-6)
    np.testing.assert_allclose(kl_k2(logp, ref), [0.5 * LN2**2], rtol=1e-6)
    # r = pi_ref / pi = 0.5: k3 = (0.5 - 1) - ln 0.5 = ln 2 - 0.5.
    np.testing.assert_allclose(kl_k3(logp, ref), [LN2 - 0.5], rtol=1e-6)


@pytest.mark.parametrize("estimator", [kl_k1, kl_k2, kl_k3])
def test_estimators_are_zero_when_policy_equals_reference(estimator):
    lp = jnp.log(jnp.array([0.1, 0.3, 0.6]))
    np.testing.assert_array_equal(jax.jit(estimator)(lp, lp), jnp.zeros(3))


def test_k1_and_k3_are_unbiased_under_the_policy():
    # Exact expectation over the vocabulary under p (no sampling noise): E_p[k1] = E_p[k3] = KL(p || q).
    rng = np.random.default_rng(0)
    logp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=7)))
    logq = jax.nn.log_softmax(jnp.asarray(rng.normal(size=7)))
    p = jnp.exp(logp)
    kl = jnp.sum(p * (logp - logq))
    np.testing.assert_allclose(jnp.sum(p * kl_k1(logp, logq)), kl, rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(p * kl_k3(logp, logq)), kl, rtol=1e-5)
    assert bool(jnp.all(kl_k3(logp, logq) >= 0)) and bool(jnp.all(kl_k2(logp, logq) >= 0))


def test_adaptive_controller_by_hand():
    ctl = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000.0)
    update = jax.jit(ctl.update)
    coef = ctl.init()
    np.testing.assert_allclose(update(coef, 6.0, 256), 0.1, rtol=1e-6)  # on target: unchanged
    np.testing.assert_allclose(update(coef, 6.6, 256), 0.1 * (1 + 0.1 * 256 / 1e4), rtol=1e-6)
    # Error clipped to +-0.2: KL = 9 (e = 0.5) and KL = 3 (e = -0.5).
    np.testing.assert_allclose(update(coef, 9.0, 256), 0.1 * 1.00512, rtol=1e-6)
    np.testing.assert_allclose(update(coef, 3.0, 256), 0.1 * 0.99488, rtol=1e-6)


def test_fixed_controller_never_moves():
    ctl = FixedKLController(0.05)
    np.testing.assert_allclose(ctl.update(ctl.init(), 100.0, 1000), 0.05)


def test_last_token_index():
    """One definition by position: a left gap ([0, 1, 0]) still reads column 1; segment ids > 1 count."""
    mask = jnp.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 2, 0]])
    np.testing.assert_array_equal(last_token_index(mask), [2, 1, 1, 0, 1])


def test_per_token_rewards_by_hand_with_missing_eos_penalty():
    logp = jnp.array([[-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0]])
    ref = jnp.array([[-1.5, -1.0, -0.5], [-2.0, -1.5, -9.0]])  # k1 = [0.5, -1, 0] and [1, 0.5, (pad)]
    mask = jnp.array([[1, 1, 1], [1, 1, 0]])
    score = jnp.array([1.0, 2.0])
    has_eos = jnp.array([True, False])
    fn = jax.jit(per_token_kl_penalty_rewards, static_argnames=("missing_eos_penalty",))
    rewards, metrics = fn(score, logp, ref, mask, 0.1, has_eos=has_eos, missing_eos_penalty=1.0)
    expected = [
        [-0.05, 0.1, 0.0 + 1.0],  # score on the last token
        [-0.1, -0.05 + (2.0 - 1.0), 0.0],  # no EOS: score 2 - penalty 1, on the last real token
    ]
    np.testing.assert_allclose(rewards, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["kl"], [-0.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(metrics["non_score_reward"], [0.05, -0.15], rtol=1e-6)
    np.testing.assert_allclose(metrics["score"], [1.0, 1.0])


def test_per_token_rewards_zero_kl_when_policy_equals_reference():
    lp = jnp.array([[-1.0, -2.0, -3.0]])
    rewards, metrics = per_token_kl_penalty_rewards(jnp.array([0.7]), lp, lp, jnp.ones((1, 3)), 0.5)
    np.testing.assert_allclose(rewards, [[0.0, 0.0, 0.7]])
    np.testing.assert_allclose(metrics["kl"], [0.0])


def test_per_token_rewards_reject_bad_input():
    lp = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="score"):
        per_token_kl_penalty_rewards(jnp.zeros(3), lp, lp, jnp.ones((2, 3)), 0.1)
    with pytest.raises(ValueError, match="has_eos"):
        per_token_kl_penalty_rewards(jnp.zeros(2), lp, lp, jnp.ones((2, 3)), 0.1, missing_eos_penalty=1.0)
