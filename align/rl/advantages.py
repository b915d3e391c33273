"""Advantage estimators and masked statistics for policy-gradient RL: pure functions.

Shapes: B batch (one row per completion), T response time, G completions per prompt.
Masks are 1 on response tokens that count and 0 on prompt / padding / tool tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array, axis: int | None = None) -> jax.Array:
    """sum(x * mask) / max(sum(mask), 1) over `axis` (all axes when None)."""
    m = mask.astype(jnp.float32)
    return jnp.sum(x * m, axis=axis) / jnp.maximum(jnp.sum(m, axis=axis), 1.0)


def masked_var(x: jax.Array, mask: jax.Array, unbiased: bool = True) -> jax.Array:
    """Variance of the masked entries (all axes), with Bessel's n / (n - 1) when `unbiased`.

    With a single masked entry the biased value (0) is returned instead of inf.
    """
    mean = masked_mean(x, mask)
    var = masked_mean(jnp.square(x - mean), mask)
    if not unbiased:
        return var
    n = jnp.sum(mask.astype(jnp.float32))
    return var * jnp.where(n > 1, n / jnp.maximum(n - 1, 1.0), 1.0)


def whiten(x: jax.Array, mask: jax.Array, shift_mean: bool = True, eps: float = 1e-8) -> jax.Array:
    """Masked whitening: (x - mean) / sqrt(var + eps) over the masked entries of the whole batch.

    `shift_mean=False` keeps the original mean (rescale only), as TRL's `masked_whiten` does for
    rewards, where the sign of the mean matters. Statistics use the unbiased variance, like TRL and
    tunix. Masked-out entries are returned as 0 so that they cannot leak into a later sum.
    """
    mean = masked_mean(x, mask)
    out = (x - mean) * jax.lax.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        out = out + mean
    return jnp.where(mask > 0, out, 0.0)


def gae(
    rewards: jax.Array,
    values: jax.Array,
    mask: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalized Advantage Estimation (Schulman et al. 2016, arXiv:1506.02438, eq. 16).

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}        (A and V are 0 after the last valid step)
        R_t     = A_t + V_t                              (the value-function target)

    Computed by a reverse `lax.scan` over T. Masked steps are skipped, not treated as zero-reward
    steps: the carry (A_{t+1}, V_{t+1}) passes through them untouched, so right padding ends the
    episode (no bootstrap past the last response token) and interior masked tokens (e.g. tool
    output) do not discount. Advantages and returns are not whitened here: call `whiten`.

    Args:
      rewards: [B, T] per-token rewards (e.g. from `kl.per_token_kl_penalty_rewards`).
      values: [B, T] value estimates V(s_t) from the old critic.
      mask: [B, T] 1 on valid response steps.
      gamma: discount; lam: GAE lambda (lam = 1: Monte-Carlo returns, lam = 0: one-step TD).

    Returns:
      (advantages [B, T], returns [B, T]), both 0 at masked positions.
    """
    if not rewards.shape == values.shape == mask.shape:
        raise ValueError(
            f"gae: rewards {rewards.shape}, values {values.shape} and mask {mask.shape} must all be [B, T]"
        )
    valid = (mask > 0).T  # [T, B]: scan runs over the leading axis

    def step(carry, xs):
        next_adv, next_value = carry  # [B], [B]
        r, v, ok = xs
        adv = r + gamma * next_value - v + gamma * lam * next_adv
        carry = (jnp.where(ok, adv, next_adv), jnp.where(ok, v, next_value))
        return carry, jnp.where(ok, adv, 0.0)

    zeros = jnp.zeros(rewards.shape[:1], jnp.float32)
    xs = (rewards.T.astype(jnp.float32), values.T.astype(jnp.float32), valid)
    _, adv_tb = jax.lax.scan(step, (zeros, zeros), xs, reverse=True)  # [T, B]
    advantages = adv_tb.T
    returns = jnp.where(mask > 0, advantages + values, 0.0)
    return advantages, returns


def _grouped(rewards: jax.Array, group_size: int, fn: str) -> jax.Array:
    """[B] -> [B // G, G], checking that the batch holds whole groups."""
    if rewards.ndim != 1:
        raise ValueError(f"{fn}: rewards must be [B], got shape {rewards.shape}")
    if group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(
            f"{fn}: rewards has {rewards.shape[0]} rows, not a whole number of groups of "
            f"group_size={group_size}"
        )
    return rewards.astype(jnp.float32).reshape(-1, group_size)


def group_relative_advantages(
    rewards: jax.Array,
    group_size: int,
    normalize_std: bool = True,
    eps: float = 1e-4,
) -> jax.Array:
    """GRPO advantages (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300, sec. 4.1.2).

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)

    `std` is the unbiased (n - 1) standard deviation and eps = 1e-4, as in TRL's GRPOTrainer
    (`scale_rewards="group"`). `normalize_std=False` is Dr. GRPO (Liu et al. 2025,
    arXiv:2503.20783), which drops the std division to remove its difficulty bias.

    Args:
      rewards: [B] with B = P * G, the G completions of each prompt adjacent
        ([p0 g0, p0 g1, ..., p1 g0, ...], TRL's `repeat_interleave` layout).
      group_size: G.

    Returns:
      [B] advantages, one per completion (broadcast over its tokens by the loss). A group whose
      rewards are all equal gets 0; a group of one gets 0.
    """
    r = _grouped(rewards, group_size, "group_relative_advantages")  # [P, G]
    centered = r - jnp.mean(r, axis=1, keepdims=True)
    if normalize_std and group_size > 1:
        centered = centered / (jnp.std(r, axis=1, ddof=1, keepdims=True) + eps)
    return centered.reshape(-1)


def rloo_advantages(rewards: jax.Array, group_size: int) -> jax.Array:
    """REINFORCE leave-one-out advantages (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740).

        A_i = r_i - (sum_{j != i} r_j) / (G - 1)      over the G completions of one prompt

    The baseline excludes the sample itself, so the estimator stays unbiased. Layout as in
    `group_relative_advantages`; requires G >= 2.
    """
    if group_size < 2:
        raise ValueError(f"rloo_advantages: group_size must be >= 2, got {group_size}")
    r = _grouped(rewards, group_size, "rloo_advantages")  # [P, G]
    baseline = (jnp.sum(r, axis=1, keepdims=True) - r) / (group_size - 1)
    return (r - baseline).reshape(-1)
