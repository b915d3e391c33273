"""KL estimators, KL-coefficient controllers and KL-shaped per-token rewards for RLHF.

Shapes: B batch, T response time. `logp` is the policy's log-prob of the sampled token, `ref_logp`
the frozen reference's; tokens are sampled from the policy, so the estimators below estimate
KL(pi || pi_ref) = E_{y ~ pi}[log pi(y) - log pi_ref(y)].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from align.model.heads import last_token_index


def kl_k1(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """k1 = log pi - log pi_ref: unbiased, high variance, can be negative per token.

    Schulman, "Approximating KL Divergence" (2020), http://joschu.net/blog/kl-approx.html.
    """
    return logp - ref_logp


def kl_k2(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """k2 = 0.5 * (log pi - log pi_ref)^2: biased, low variance, >= 0 (Schulman 2020)."""
    return 0.5 * jnp.square(logp - ref_logp)


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """k3 = (r - 1) - log r with r = pi_ref / pi: unbiased, low variance, >= 0 (Schulman 2020).

    This is the per-token KL of GRPO (Shao et al. 2024, eq. 4) and of TRL's GRPOTrainer.
    """
    log_r = ref_logp - logp
    return jnp.exp(log_r) - log_r - 1.0


@dataclasses.dataclass(frozen=True)
class FixedKLController:
    """Constant KL coefficient beta; `update` returns it unchanged (same interface as adaptive)."""

    init_kl_coef: float = 0.05

    def init(self) -> jax.Array:
        return jnp.asarray(self.init_kl_coef, jnp.float32)

    def update(self, kl_coef: jax.Array, current_kl: jax.Array, n_steps: int | jax.Array) -> jax.Array:
        del current_kl, n_steps
        return kl_coef


@dataclasses.dataclass(frozen=True)
class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, arXiv:1909.08593, sec. 2.2).

        e      = clip(KL_current / KL_target - 1, -0.2, 0.2)
        beta' = beta * (1 + e * n_steps / horizon)

    A proportional controller: beta grows while the policy drifts further than `target` nats from
    the reference and shrinks otherwise. `n_steps` is the number of samples (episodes) seen since
    the last update, `horizon` the number of samples over which to close the gap. The state is the
    coefficient itself (a scalar array), so the update is pure and can run under jit.
    """

    init_kl_coef: float = 0.05
    target: float = 6.0
    horizon: float = 10000.0

    def init(self) -> jax.Array:
        return jnp.asarray(self.init_kl_coef, jnp.float32)

    def update(self, kl_coef: jax.Array, current_kl: jax.Array, n_steps: int | jax.Array) -> jax.Array:
        error = jnp.clip(current_kl / self.target - 1.0, -0.2, 0.2)
        return kl_coef * (1.0 + error * n_steps / self.horizon)


def per_token_kl_penalty_rewards(
    score: jax.Array,
    logp: jax.Array,
    ref_logp: jax.Array,
    mask: jax.Array,
    kl_coef: float | jax.Array,
    *,
    has_eos: jax.Array | None = None,
    missing_eos_penalty: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """RLHF per-token reward: a KL penalty on every token plus the sequence score on the last one.

        r_t = -kl_coef * (logp_t - ref_logp_t)                  for every response token t
        r_T += score - missing_eos_penalty * [no EOS]           T = last response token of the row

    (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020; TRL's PPOTrainer, which subtracts
    `missing_eos_penalty` from the score of completions that contain no EOS token.) The KL term is
    k1 per token, whose sum over the response is the sequence log-ratio.

    Args:
      score: [B] reward-model score of each completion.
      logp, ref_logp: [B, T] log-probs of the sampled tokens under the policy and the reference.
      mask: [B, T] 1 on response tokens (right padding after the last one).
      kl_coef: beta (a float or a scalar array from a KL controller).
      has_eos: [B] bool, whether the completion stopped on EOS; required with `missing_eos_penalty`.
      missing_eos_penalty: subtracted from the score of rows where `has_eos` is False.

    Returns:
      (rewards [B, T] zero outside the mask, {"kl": [B] sequence KL (sum of k1),
       "non_score_reward": [B] sum of the KL penalty, "score": [B] the penalised score}).
    """
    if logp.shape != ref_logp.shape or logp.shape != mask.shape or score.shape != logp.shape[:1]:
        raise ValueError(
            f"per_token_kl_penalty_rewards: score {score.shape} must be [B] and logp {logp.shape}, "
            f"ref_logp {ref_logp.shape}, mask {mask.shape} must be [B, T]"
        )
    score = score.astype(jnp.float32)
    if missing_eos_penalty is not None:
        if has_eos is None:
            raise ValueError("per_token_kl_penalty_rewards: missing_eos_penalty needs `has_eos` [B]")
        score = jnp.where(has_eos, score, score - missing_eos_penalty)
    m = mask.astype(jnp.float32)
    kl = kl_k1(logp, ref_logp) * m  # [B, T]
    non_score = -kl_coef * kl
    last = last_token_index(mask)  # [B]
    is_last = (jnp.arange(mask.shape[-1])[None, :] == last[:, None]) & (mask > 0)  # [B, T]
    rewards = non_score + jnp.where(is_last, score[:, None], 0.0)
    metrics = {"kl": jnp.sum(kl, -1), "non_score_reward": jnp.sum(non_score, -1), "score": score}
    return rewards, metrics
