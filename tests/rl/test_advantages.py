"""GAE, whitening, GRPO group advantages and RLOO: hand-computed cases and reference loops."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.rl.advantages import (
    gae,
    group_relative_advantages,
    masked_mean,
    masked_var,
    rloo_advantages,
    whiten,
)

GAMMA, LAM = 0.9, 0.8  # gamma * lam = 0.72


def test_gae_by_hand_full_padded_and_interior_mask():
    rewards = jnp.array([[1.0, 0.0, 2.0], [1.0, 2.0, 9.0], [1.0, 5.0, 2.0]])
    values = jnp.array([[0.5, 1.0, 1.5], [0.5, 1.0, 7.0], [0.5, 9.0, 1.5]])
    mask = jnp.array([[1, 1, 1], [1, 1, 0], [1, 0, 1]])
    adv, ret = jax.jit(gae, static_argnums=(3, 4))(rewards, values, mask, GAMMA, LAM)
    # Row 0 (full):
    #   t=2: delta = 2 + 0.9*0   - 1.5 = 0.5                A2 = 0.5
    #   t=1: delta = 0 + 0.9*1.5 - 1.0 = 0.35               A1 = 0.35 + 0.72*0.5  = 0.71
    #   t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4                A0 = 1.4  + 0.72*0.71 = 1.9112
    # Row 1 (right padding: the episode ends at t=1, the padded reward 9 and value 7 are ignored):
    #   t=1: delta = 2 + 0 - 1.0 = 1.0                      A1 = 1.0
    #   t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4                A0 = 1.4 + 0.72*1.0 = 2.12
    # Row 2 (t=1 masked, e.g. a tool token: skipped, so t=0 bootstraps from t=2 with no extra discount):
    #   t=2: delta = 2 - 1.5 = 0.5                          A2 = 0.5
    #   t=0: delta = 1 + 0.9*1.5 - 0.5 = 1.85               A0 = 1.85 + 0.72*0.5 = 2.21
    np.testing.assert_allclose(
        adv, [[1.9112, 0.71, 0.5], [2.12, 1.0, 0.0], [2.21, 0.0, 0.5]], rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        ret, [[2.4112, 1.71, 2.0], [2.62, 2.0, 0.0], [2.71, 0.0, 2.0]], rtol=1e-6, atol=1e-6
    )


def _reference_gae(rewards, values, gamma, lam):
    """The GAE loop of TRL's PPOTrainer (trl/trainer/ppo_trainer.py in older TRL releases, section
    "compute advantages and returns"; the installed trl 1.16 no longer ships PPO)."""
    b, t = rewards.shape
    last, out = np.zeros(b), []
    for i in reversed(range(t)):
        next_values = values[:, i + 1] if i < t - 1 else 0.0
        delta = rewards[:, i] + gamma * next_values - values[:, i]
        last = delta + gamma * lam * last
        out.append(last)
    adv = np.stack(out[::-1], axis=1)
    return adv, adv + values


def test_gae_equals_reference_loop_on_random_full_rows():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    adv_ref, ret_ref = _reference_gae(rewards, values, 0.97, 0.95)
    adv, ret = gae(jnp.asarray(rewards), jnp.asarray(values), jnp.ones((4, 6)), 0.97, 0.95)
    np.testing.assert_allclose(adv, adv_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ret_ref, rtol=1e-5, atol=1e-5)


def test_gae_with_gamma_lam_one_is_reward_to_go_minus_value():
    rewards = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    values = jnp.array([[0.1, 0.2, 0.3, 0.4]])
    adv, ret = gae(rewards, values, jnp.ones((1, 4)), 1.0, 1.0)
    np.testing.assert_allclose(ret, [[10.0, 9.0, 7.0, 4.0]], rtol=1e-6)
    np.testing.assert_allclose(adv, [[9.9, 8.8, 6.7, 3.6]], rtol=1e-6)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="gae"):
        gae(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.ones((2, 3)), 1.0, 1.0)


def test_masked_mean_and_unbiased_var_by_hand():
    x = jnp.array([1.0, 2.0, 3.0, 100.0])
    mask = jnp.array([1, 1, 1, 0])
    np.testing.assert_allclose(masked_mean(x, mask), 2.0)
    np.testing.assert_allclose(masked_var(x, mask), 1.0)  # (1 + 0 + 1) / 2
    np.testing.assert_allclose(masked_var(x, mask, unbiased=False), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(masked_var(x, jnp.array([0, 1, 0, 0])), 0.0)  # one entry: no inf


def test_whiten_by_hand():
    x = jnp.array([[1.0, 2.0], [3.0, 100.0]])
    mask = jnp.array([[1, 1], [1, 0]])
    # mean 2, unbiased var 1: (x - 2) / 1; the masked entry is 0.
    np.testing.assert_allclose(jax.jit(whiten)(x, mask), [[-1.0, 0.0], [1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(whiten(x, mask, shift_mean=False), [[1.0, 2.0], [3.0, 0.0]], atol=1e-6)
    full = whiten(jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.ones(4))
    # mean 2.5, unbiased var 5/3.
    np.testing.assert_allclose(full, (np.arange(1, 5) - 2.5) / math.sqrt(5 / 3), rtol=1e-6)
    np.testing.assert_allclose(np.mean(full), 0.0, atol=1e-7)
    np.testing.assert_allclose(np.std(full, ddof=1), 1.0, rtol=1e-6)


def test_group_relative_advantages_by_hand():
    rewards = jnp.array([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = jax.jit(group_relative_advantages, static_argnums=(1, 2))(rewards, 4, True)
    # Group 1: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = sqrt(1/3). Group 2: all equal -> 0.
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    np.testing.assert_allclose(adv, [a, -a, -a, a, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(
        group_relative_advantages(rewards, 4, normalize_std=False), [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]
    )
    np.testing.assert_allclose(group_relative_advantages(jnp.array([3.0, -1.0]), 1), [0.0, 0.0])


def test_group_relative_advantages_equal_trl_formula():
    torch = pytest.importorskip("torch")
    trl_utils = pytest.importorskip("trl.trainer.utils")
    rewards = np.random.default_rng(1).normal(size=12).astype(np.float32)
    g = 4
    # trl/trainer/grpo_trainer.py _generate_and_score_completions, scale_rewards="group".
    r = torch.tensor(rewards)
    mean = torch.nanmean(r.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    std = trl_utils.nanstd(r.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    expected = (r - mean) / (std + 1e-4)
    np.testing.assert_allclose(
        group_relative_advantages(jnp.asarray(rewards), g), expected.numpy(), rtol=1e-5
    )


def test_rloo_by_hand():
    adv = rloo_advantages(jnp.array([1.0, 2.0, 3.0, 0.0, 0.0, 4.0]), 3)
    # Baselines: (2+3)/2, (1+3)/2, (1+2)/2 | 2, 2, 0.
    np.testing.assert_allclose(adv, [-1.5, 0.0, 1.5, -2.0, -2.0, 4.0])


@pytest.mark.parametrize("fn", [group_relative_advantages, rloo_advantages])
def test_group_functions_reject_partial_groups(fn):
    with pytest.raises(ValueError, match="group_size=4"):
        fn(jnp.zeros(6), 4)
    with pytest.raises(ValueError, match=r"\[B\]"):
        fn(jnp.zeros((2, 4)), 4)


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        rloo_advantages(jnp.zeros(4), 1)
