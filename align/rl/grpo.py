"""GRPO: group-relative policy optimisation, no critic (Shao et al. 2024, arXiv:2402.03300).

One iteration:
    rollout     each of the B prompts is repeated G times ([p0 g0, p0 g1, ..., p1 g0, ...]); B * G
                responses are sampled and scored (pi_old, pi_ref log-probs) and rewarded (s)
    advantages  A_i = (s_i - mean(s_group)) / (std(s_group) + eps)         one value per response
    updates     num_iterations shuffled passes over minibatches; each is one pure jitted step on
                grpo_loss(pi, pi_old, pi_ref, A) = clipped surrogate + beta * k3 KL, token- or
                sequence-aggregated

beta is fixed (TRL's default); it is carried through align.rl.loop as the "KL coefficient" so the
logs and checkpoints look the same as PPO's. Shapes: B prompts, G group size, M response length.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from align import checks
from align.model import Decoder
from align.rl.advantages import group_relative_advantages, masked_mean
from align.rl.loop import FromState, in_mesh, placed, resolve
from align.rl.losses import Aggregation, grpo_loss
from align.rl.feed import RolloutRows, place_rollout_prompts, repeat_prompts  # noqa: F401 (re-exported)
from align.rl.ppo import optimize_epochs, split_rng
from align.rl.rewards import RewardFn
from align.rl.rollout import RolloutConfig, make_rollout, response_logprobs
from align.training.state import TrainState
from align.training.step import make_train_step


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """GRPO hyper-parameters (defaults follow TRL's GRPOConfig)."""

    rollout: RolloutConfig = RolloutConfig()
    group_size: int = 4  # G completions per prompt
    num_iterations: int = 1  # passes over each rollout (TRL's mu)
    minibatch_size: int = 8  # rows (completions) per optimizer update
    grad_accum: int = 1
    clip_eps: float = 0.2
    clip_eps_high: float | None = None  # DAPO clip-higher; None = clip_eps
    beta: float = 0.04  # weight of the k3 KL to the reference (0: reference unused in the loss)
    aggregation: Aggregation = "token"
    normalize_std: bool = True  # False: Dr. GRPO advantages (no std division)
    missing_eos_penalty: float | None = None

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError(f"GRPOConfig.group_size={self.group_size}: group advantages need at least 2")
        checks.at_least(self, 1, "num_iterations", "minibatch_size", "grad_accum")
        checks.positive_number(self, "clip_eps")
        checks.positive_number(self, "clip_eps_high", optional=True)
        checks.non_negative(self, "beta")
        if self.aggregation not in ("token", "sequence"):
            raise ValueError(f"GRPOConfig.aggregation={self.aggregation!r}: expected 'token' or 'sequence'")


def grpo_loss_fn(model: Decoder, batch: Mapping[str, jax.Array], rng, *, config: GRPOConfig):
    """grpo_loss on one minibatch (align.training's loss_fn signature)."""
    del rng
    logp = response_logprobs(
        model, batch, temperature=config.rollout.temperature, chunk_size=config.rollout.logprob_chunk
    )
    m = batch["response_mask"]
    ref = batch["ref_logprobs"] if config.beta != 0 else None
    loss, metrics = grpo_loss(
        logp,
        batch["logprobs"],
        ref,
        batch["advantages"],
        m,
        config.clip_eps,
        config.beta,
        config.aggregation,
        clip_eps_high=config.clip_eps_high,
    )
    # Token aggregation weighs micro-batches by tokens, sequence aggregation by rows: either way
    # gradient accumulation reproduces the full minibatch's loss.
    weight = jnp.sum(m) if config.aggregation == "token" else jnp.asarray(m.shape[0], jnp.float32)
    return loss, {**metrics, "weight": weight}


def group_scores(scores: jax.Array, has_eos: jax.Array, config: GRPOConfig) -> jax.Array:
    """Rewards after the missing-EOS penalty (subtracted from responses that never stopped)."""
    if config.missing_eos_penalty is None:
        return scores
    return jnp.where(has_eos, scores, scores - config.missing_eos_penalty)


def make_grpo_iteration(
    config: GRPOConfig,
    optimizer: optax.GradientTransformation,
    reference: Decoder | FromState,
    reward_fn: RewardFn | FromState,
    *,
    shardings: tuple | None = None,
    layout: RolloutRows | None = None,
):
    """iterate(state, prompts, beta) -> (state, beta, metrics) for align.rl.loop.rl_loop.

    `state` is a TrainState of the policy Decoder; `prompts` a right-padded prompt batch of B rows,
    sampled G times each. shardings: as make_ppo_iteration's (the B * G rows split over the data axes);
    layout: align.rl.feed.rollout_rows(..., group=G) when each process passes only its prompts.
    """
    rows = None if shardings is None else shardings[1]
    step = make_train_step(
        functools.partial(grpo_loss_fn, config=config),
        optimizer,
        grad_accum=config.grad_accum,
        shardings=shardings,
    )
    step = placed(step, rows)

    def iterate(state: TrainState, prompts: Mapping, beta: jax.Array):
        state, sample_rng = split_rng(state)
        tokens, lengths = place_rollout_prompts(prompts, config.group_size, rows, layout)
        ref, reward = resolve(reference, state), resolve(reward_fn, state)
        rollout, metrics = make_rollout(
            state.model(), ref, None, reward, tokens, lengths, config.rollout, sample_rng
        )
        scores = group_scores(rollout.scores, rollout.has_eos, config)
        advantages = group_relative_advantages(scores, config.group_size, config.normalize_std)
        grouped = scores.reshape(-1, config.group_size)
        metrics["reward/group_std"] = float(jnp.mean(jnp.std(grouped, axis=1)))
        metrics["groups/all_equal_frac"] = float(jnp.mean(jnp.all(grouped == grouped[:, :1], axis=1)))
        batch = {**rollout.as_batch(), "advantages": advantages}
        state, update_metrics = optimize_epochs(
            step, state, batch, config.num_iterations, config.minibatch_size, rows
        )
        update_metrics["advantages/abs_mean"] = float(
            masked_mean(jnp.abs(advantages), jnp.ones_like(advantages))
        )
        return state, beta, {**metrics, **update_metrics}

    return in_mesh(iterate, rows)
