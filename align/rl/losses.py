"""Policy-optimisation losses: PPO (policy + value), GRPO and DPO. Pure, `(loss, metrics)`.

Shapes: B batch (one completion per row), T response time. Log-probs are of the sampled / given
tokens, float32, from `align.training.logprobs`. Masks are 1 on response tokens that count.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from align.rl.advantages import masked_mean
from align.rl.kl import kl_k3

Aggregation = Literal["token", "sequence"]


def clipped_surrogate(
    log_ratio: jax.Array,
    advantages: jax.Array,
    clip_low: float,
    clip_high: float,
) -> tuple[jax.Array, jax.Array]:
    """Per-token PPO clipped surrogate, as a loss (Schulman et al. 2017, arXiv:1707.06347, eq. 7).

        rho  = exp(log pi - log pi_old)
        loss = max(-A * rho, -A * clip(rho, 1 - clip_low, 1 + clip_high))

    `clip_high > clip_low` is DAPO's clip-higher (Yu et al. 2025, arXiv:2503.14476).

    Returns:
      (per-token loss, is_clipped) where is_clipped marks tokens whose clipped branch is active
      (rho > 1 + clip_high with A > 0, or rho < 1 - clip_low with A < 0): their gradient is zero.
    """
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return jnp.maximum(unclipped, clipped), clipped > unclipped


def aggregate(per_token: jax.Array, mask: jax.Array, aggregation: Aggregation) -> jax.Array:
    """Reduce a [B, T] per-token loss to a scalar.

    "token":    sum_{b,t} l * m / sum_{b,t} m          every token weighs the same (DAPO, TRL "bnpo")
    "sequence": mean_b (sum_t l * m / sum_t m)         every sequence weighs the same (GRPO paper,
                                                       TRL "grpo"; biased towards short answers)
    """
    if aggregation == "token":
        return masked_mean(per_token, mask)
    if aggregation == "sequence":
        return jnp.mean(masked_mean(per_token, mask, axis=-1))
    raise ValueError(f"aggregate: aggregation must be 'token' or 'sequence', got {aggregation!r}")


def _check_same_shape(fn: str, **arrays: jax.Array) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{fn}: these must share one [B, T] shape: {shapes}")


def ppo_policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps: float = 0.2,
    *,
    clip_eps_high: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO-clip policy loss, token-mean over the batch (Schulman et al. 2017, eq. 7).

        L = sum_{b,t} m * max(-A rho, -A clip(rho, 1 - eps, 1 + eps)) / sum m,   rho = pi / pi_old

    At rho = 1 (first minibatch of an epoch) L = -masked_mean(A).

    Args:
      logp: [B, T] current policy log-probs (differentiated).
      old_logp: [B, T] log-probs of the policy that sampled the rollout (constants).
      advantages: [B, T] (e.g. whitened GAE) or [B] (broadcast over tokens).
      mask: [B, T].
      clip_eps: epsilon; `clip_eps_high` overrides the upper bound (defaults to `clip_eps`).

    Returns:
      (loss, {"policy_loss", "clip_frac" (fraction of tokens on the clipped branch),
       "approx_kl" (masked mean of 0.5 (log rho)^2, as TRL logs it), "ratio_mean"}).
    """
    _check_same_shape("ppo_policy_loss", logp=logp, old_logp=old_logp, mask=mask)
    adv = advantages[:, None] if advantages.ndim == 1 else advantages
    log_ratio = logp - old_logp
    high = clip_eps if clip_eps_high is None else clip_eps_high
    per_token, is_clipped = clipped_surrogate(log_ratio, adv, clip_eps, high)
    loss = masked_mean(per_token, mask)
    metrics = {
        "policy_loss": loss,
        "clip_frac": masked_mean(is_clipped.astype(jnp.float32), mask),
        "approx_kl": masked_mean(0.5 * jnp.square(log_ratio), mask),
        "ratio_mean": masked_mean(jnp.exp(log_ratio), mask),
    }
    return loss, metrics


def ppo_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    mask: jax.Array,
    clip_value: float = 0.2,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped value loss (PPO2 baselines; Ziegler et al. 2019; TRL PPOTrainer).

        V_clip = V_old + clip(V - V_old, -c, c)
        L      = 0.5 * sum m * max((V - R)^2, (V_clip - R)^2) / sum m

    The max keeps the pessimistic error, so one minibatch cannot move the critic more than c away
    from the rollout's values in the direction that lowers the loss.

    Returns:
      (loss, {"value_loss", "value_clip_frac" (fraction where the clipped error is the larger),
       "value_mean"}).
    """
    _check_same_shape("ppo_value_loss", values=values, old_values=old_values, returns=returns, mask=mask)
    v_clipped = old_values + jnp.clip(values - old_values, -clip_value, clip_value)
    err = jnp.square(values - returns)
    err_clipped = jnp.square(v_clipped - returns)
    loss = 0.5 * masked_mean(jnp.maximum(err, err_clipped), mask)
    metrics = {
        "value_loss": loss,
        "value_clip_frac": masked_mean((err_clipped > err).astype(jnp.float32), mask),
        "value_mean": masked_mean(values, mask),
    }
    return loss, metrics


def grpo_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    ref_logp: jax.Array | None,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    aggregation: Aggregation = "token",
    *,
    clip_eps_high: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO loss (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300, eq. 3).

        l_{b,t} = max(-A_b rho, -A_b clip(rho, 1 - eps, 1 + eps)) + beta * k3_{b,t}
        k3      = pi_ref / pi - log(pi_ref / pi) - 1          (per-token KL to the reference)
        L       = aggregate(l, mask, aggregation)

    One advantage per completion (from `group_relative_advantages`) is shared by all its tokens.
    With aggregation="sequence" and beta, eps as given this equals TRL's GRPOTrainer
    `loss_type="grpo"`; aggregation="token" equals `loss_type="bnpo"`.

    Args:
      logp, old_logp: [B, T] current and sampling-policy log-probs.
      ref_logp: [B, T] reference log-probs, or None when beta == 0 (then no KL term or metric).
      advantages: [B].
      mask: [B, T].
      clip_eps, clip_eps_high: lower / upper clip range (DAPO clip-higher when they differ).
      beta: KL coefficient (0 disables the reference).
      aggregation: "token" or "sequence" (see `aggregate`).

    Returns:
      (loss, {"loss", "kl" (token-mean k3, when ref_logp is given), "clip_frac", "ratio_mean"}).
    """
    _check_same_shape("grpo_loss", logp=logp, old_logp=old_logp, mask=mask)
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"grpo_loss: advantages must be [B]={logp.shape[:1]}, got {advantages.shape}")
    high = clip_eps if clip_eps_high is None else clip_eps_high
    log_ratio = logp - old_logp
    per_token, is_clipped = clipped_surrogate(log_ratio, advantages[:, None], clip_eps, high)
    metrics = {}
    if ref_logp is None and not (isinstance(beta, (int, float)) and beta == 0):
        raise ValueError("grpo_loss: beta != 0 needs ref_logp [B, T], got None")
    if ref_logp is not None:
        _check_same_shape("grpo_loss", logp=logp, ref_logp=ref_logp)
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + beta * kl
        metrics["kl"] = masked_mean(kl, mask)
    loss = aggregate(per_token, mask, aggregation)
    metrics.update(
        loss=loss,
        clip_frac=masked_mean(is_clipped.astype(jnp.float32), mask),
        ratio_mean=masked_mean(jnp.exp(log_ratio), mask),
    )
    return loss, metrics


def dpo_loss(
    policy_chosen_lp: jax.Array,
    policy_rejected_lp: jax.Array,
    ref_chosen_lp: jax.Array,
    ref_rejected_lp: jax.Array,
    beta: float = 0.1,
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid",
    label_smoothing: float = 0.0,
    *,
    chosen_lengths: jax.Array | None = None,
    rejected_lengths: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Direct Preference Optimisation loss over [B] sequence log-probs (sums over response tokens).

        h_c = log pi(y_c) - log pi_ref(y_c),  h_r = log pi(y_r) - log pi_ref(y_r),  h = h_c - h_r

    "sigmoid" (Rafailov et al. 2023, arXiv:2305.18290, eq. 7), with conservative label smoothing
    eps (cDPO, Mitchell 2023: the preference label is flipped with probability eps):
        L = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
    At pi == pi_ref, h = 0 and L = ln 2.

    "ipo" (Azar et al. 2023, arXiv:2310.12036, eq. 17, with tau = beta):
        L = (h - 1 / (2 beta))^2
    When `chosen_lengths` / `rejected_lengths` ([B] response token counts) are given, h_c and h_r
    are divided by them first, as TRL does (per-token average log-ratios, confirmed with the IPO
    authors); they are ignored by "sigmoid".

    Returns:
      (mean loss, {"loss", "rewards/chosen" = mean beta h_c, "rewards/rejected" = mean beta h_r,
       "accuracy" = mean[beta h_c > beta h_r], "margin" = mean beta (h_c - h_r)}).
    """
    if not policy_chosen_lp.shape == policy_rejected_lp.shape == ref_chosen_lp.shape == ref_rejected_lp.shape:
        raise ValueError(
            f"dpo_loss: policy_chosen_lp {policy_chosen_lp.shape}, policy_rejected_lp "
            f"{policy_rejected_lp.shape}, ref_chosen_lp {ref_chosen_lp.shape} and ref_rejected_lp "
            f"{ref_rejected_lp.shape} must share one [B] shape"
        )
    chosen_ratio = policy_chosen_lp - ref_chosen_lp
    rejected_ratio = policy_rejected_lp - ref_rejected_lp
    if loss_type == "sigmoid":
        logits = beta * (chosen_ratio - rejected_ratio)
        eps = label_smoothing
        losses = -(1.0 - eps) * jax.nn.log_sigmoid(logits) - eps * jax.nn.log_sigmoid(-logits)
    elif loss_type == "ipo":
        if not isinstance(label_smoothing, (int, float)) or label_smoothing != 0:
            raise ValueError("dpo_loss: label_smoothing is not defined for loss_type='ipo'")
        if (chosen_lengths is None) != (rejected_lengths is None):
            raise ValueError("dpo_loss: pass both chosen_lengths and rejected_lengths, or neither")
        h_c, h_r = chosen_ratio, rejected_ratio
        if chosen_lengths is not None:
            h_c = h_c / jnp.maximum(chosen_lengths, 1.0)
            h_r = h_r / jnp.maximum(rejected_lengths, 1.0)
        losses = jnp.square(h_c - h_r - 1.0 / (2.0 * beta))
    else:
        raise ValueError(f"dpo_loss: loss_type must be 'sigmoid' or 'ipo', got {loss_type!r}")
    loss = jnp.mean(losses)
    return loss, {"loss": loss, **_implicit_reward_metrics(beta * chosen_ratio, beta * rejected_ratio)}


def _implicit_reward_metrics(chosen_rewards: jax.Array, rejected_rewards: jax.Array) -> dict[str, jax.Array]:
    """DPO's implicit rewards beta * log(pi / pi_ref) [B]: their means, ranking accuracy and margin."""
    chosen_rewards = jax.lax.stop_gradient(chosen_rewards)
    rejected_rewards = jax.lax.stop_gradient(rejected_rewards)
    return {
        "rewards/chosen": jnp.mean(chosen_rewards),
        "rewards/rejected": jnp.mean(rejected_rewards),
        "accuracy": jnp.mean((chosen_rewards > rejected_rewards).astype(jnp.float32)),
        "margin": jnp.mean(chosen_rewards - rejected_rewards),
    }
