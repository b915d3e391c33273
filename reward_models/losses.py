"""Reward-model losses: Bradley-Terry pairwise preference loss. Pure, `(loss, metrics)`.

Shapes: B preference pairs; `r_chosen` / `r_rejected` are the scalar rewards of the two responses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pairwise_accuracy(r_chosen: jax.Array, r_rejected: jax.Array) -> jax.Array:
    """Fraction of pairs ranked correctly: mean[r_chosen > r_rejected] (ties count as wrong)."""
    return jnp.mean((r_chosen > r_rejected).astype(jnp.float32))


def bradley_terry_loss(
    r_chosen: jax.Array,
    r_rejected: jax.Array,
    margin: jax.Array | None = None,
    center_coef: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Bradley-Terry negative log-likelihood of the human preference (Bradley & Terry 1952).

        P(y_c > y_r) = sigmoid(r_c - r_r)
        L = mean_b[-log sigmoid(r_c - r_r - margin)] + center_coef * mean_b[(r_c + r_r)^2]

    The optional per-pair `margin` asks the chosen reward to win by at least that much (Llama 2,
    Touvron et al. 2023, eq. 2). The centring term (Eisenstein et al. 2023, arXiv:2312.09244;
    TRL's `center_rewards_coefficient`) pins the otherwise free offset of the rewards near 0, since
    the BT likelihood only sees differences. Matches TRL's RewardTrainer.compute_loss.

    Args:
      r_chosen, r_rejected: [B] rewards.
      margin: optional [B] (or scalar) margin.
      center_coef: weight of the centring term (0 disables it).

    Returns:
      (loss, {"loss", "accuracy", "margin" = mean(r_c - r_r), "reward_mean" = mean of all rewards}).
    """
    if r_chosen.shape != r_rejected.shape or r_chosen.ndim != 1:
        raise ValueError(
            f"bradley_terry_loss: r_chosen {r_chosen.shape} and r_rejected {r_rejected.shape} "
            "must both be [B]"
        )
    r_c = r_chosen.astype(jnp.float32)
    r_r = r_rejected.astype(jnp.float32)
    diff = r_c - r_r
    shifted = diff if margin is None else diff - margin
    loss = -jnp.mean(jax.nn.log_sigmoid(shifted))
    if not (isinstance(center_coef, (int, float)) and center_coef == 0):
        loss = loss + center_coef * jnp.mean(jnp.square(r_c + r_r))
    metrics = {
        "loss": loss,
        "accuracy": pairwise_accuracy(r_c, r_r),
        "margin": jnp.mean(diff),
        "reward_mean": 0.5 * (jnp.mean(r_c) + jnp.mean(r_r)),
    }
    return loss, metrics
