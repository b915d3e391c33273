"""PPO for RLHF (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022; TRL's PPOTrainer).

One iteration:
    rollout    sample B responses, score: pi_old, pi_ref log-probs, values V, reward-model scores s
    rewards    r_t = -beta (log pi_old - log pi_ref)_t  (+ s - missing_eos_penalty [no EOS] at the last token)
               optionally rescaled by their std (whiten_rewards)
    GAE        A, R = gae(r, V, mask, gamma, lam);  A whitened over the batch
    updates    ppo_epochs passes over shuffled minibatches; each is one pure jitted step on
               L = ppo_policy_loss(pi, pi_old, A) + vf_coef * ppo_value_loss(V, V_old, R)
    KL control beta <- controller.update(beta, mean sequence KL, B)    (fixed or adaptive)

The policy and the critic are two decoders trained by one optimizer (`PolicyAndValue`); the frozen
reference is passed separately (or as a `FromState` view sharing the state's frozen arrays).
Shapes: B batch, M response length.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from align import checks, distributed
from align.model import Decoder
from align.model.heads import ScoreModel
from align.rl.advantages import gae, masked_mean, whiten
from align.rl.feed import RolloutRows, place_rollout_prompts
from align.rl.kl import AdaptiveKLController, FixedKLController, per_token_kl_penalty_rewards
from align.rl.loop import FromState, in_mesh, owned_train_state, placed, resolve
from align.rl.losses import ppo_policy_loss, ppo_value_loss
from align.rl.rewards import RewardFn
from align.rl.rollout import Rollout, RolloutConfig, make_rollout, response_logprobs, response_values
from align.training.state import TrainState
from align.training.step import make_train_step


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (defaults follow TRL's PPOConfig where it has one)."""

    rollout: RolloutConfig = RolloutConfig()
    ppo_epochs: int = 4
    minibatch_size: int = 8  # rows per optimizer update; must divide the rollout batch
    grad_accum: int = 1  # micro-batches per minibatch update
    clip_eps: float = 0.2
    clip_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05  # beta, the initial value with an adaptive controller
    adaptive_kl: bool = False
    kl_target: float = 6.0  # adaptive controller: target sequence KL (nats)
    kl_horizon: float = 10000.0
    whiten_rewards: bool = False
    missing_eos_penalty: float | None = None

    def __post_init__(self):
        if self.ppo_epochs < 1 or self.minibatch_size < 1:
            raise ValueError(
                f"PPOConfig: ppo_epochs={self.ppo_epochs} and minibatch_size="
                f"{self.minibatch_size} must be >= 1"
            )
        checks.at_least(self, 1, "grad_accum")
        checks.positive_number(self, "clip_eps", "clip_value", "kl_target", "kl_horizon")
        checks.non_negative(self, "vf_coef", "kl_coef")
        checks.fraction(self, "gamma", "lam", closed=True)

    def kl_controller(self) -> FixedKLController | AdaptiveKLController:
        if self.adaptive_kl:
            return AdaptiveKLController(self.kl_coef, self.kl_target, self.kl_horizon)
        return FixedKLController(self.kl_coef)


class PolicyAndValue(nnx.Module):
    """The two trained models of PPO, so one TrainState / optimizer / checkpoint holds both."""

    def __init__(self, policy: Decoder, value: ScoreModel):
        self.policy = policy
        self.value = value


@functools.partial(jax.jit, static_argnames=("config",))
def ppo_advantages(rollout: Rollout, kl_coef: jax.Array, config: PPOConfig):
    """(advantages [B, M] whitened, returns [B, M], metrics) from a scored rollout (pure)."""
    m = rollout.response_mask
    rewards, kl_metrics = per_token_kl_penalty_rewards(
        rollout.scores,
        rollout.logprobs,
        rollout.ref_logprobs,
        m,
        kl_coef,
        has_eos=rollout.has_eos,
        missing_eos_penalty=config.missing_eos_penalty,
    )
    if config.whiten_rewards:
        rewards = whiten(rewards, m, shift_mean=False)
    advantages, returns = gae(rewards, rollout.values, m, config.gamma, config.lam)
    metrics = {
        "kl/seq": jnp.mean(kl_metrics["kl"]),
        "reward/non_score": jnp.mean(kl_metrics["non_score_reward"]),
        "reward/shaped_score": jnp.mean(kl_metrics["score"]),
        "returns/mean": masked_mean(returns, m),
        "advantages/raw_mean": masked_mean(advantages, m),
    }
    return whiten(advantages, m), returns, metrics


def ppo_loss(model: PolicyAndValue, batch: Mapping[str, jax.Array], rng, *, config: PPOConfig):
    """L = policy loss + vf_coef * value loss on one minibatch (align.training's loss_fn signature)."""
    del rng
    logp, entropy = response_logprobs(
        model.policy,
        batch,
        temperature=config.rollout.temperature,
        chunk_size=config.rollout.logprob_chunk,
        with_entropy=True,
    )
    values = response_values(model.value, batch)
    m = batch["response_mask"]
    p_loss, p_metrics = ppo_policy_loss(logp, batch["logprobs"], batch["advantages"], m, config.clip_eps)
    v_loss, v_metrics = ppo_value_loss(values, batch["values"], batch["returns"], m, config.clip_value)
    loss = p_loss + config.vf_coef * v_loss
    # Weight = response tokens, so grad accumulation averages tokens exactly like one big minibatch.
    metrics = {**p_metrics, **v_metrics, "entropy/update": masked_mean(entropy, m), "weight": jnp.sum(m)}
    return loss, metrics


def minibatches(batch: Mapping[str, jax.Array], size: int, rng, rows=None) -> list[dict[str, jax.Array]]:
    """The rows of `batch` in a random order, cut into minibatches of `size` rows, each placed with
    `rows` (the data-axes sharding the train step expects; None: as XLA lays them out)."""
    B = next(iter(batch.values())).shape[0]
    if B % size:
        raise ValueError(f"minibatch_size={size} does not divide the rollout batch of {B} rows")
    return _shuffled_minibatches(dict(batch), rng, size=size, rows=rows)


@functools.partial(jax.jit, static_argnames=("size", "rows"))
def _shuffled_minibatches(batch, rng, *, size: int, rows):
    # One program for a whole pass. Eagerly, each field's gather and each re-placement would be its
    # own program with cross-process collectives; on several CPU processes (gloo) independent ones in
    # flight at once deadlocked under load, twice at this spot (tests/multihost, 2 processes x 2 devices).
    B = next(iter(batch.values())).shape[0]
    perm = jax.random.permutation(rng, B)
    out = [{k: v[perm[i : i + size]] for k, v in batch.items()} for i in range(0, B, size)]
    return out if rows is None else jax.lax.with_sharding_constraint(out, rows)


def optimize_epochs(
    step, state: TrainState, batch: Mapping[str, jax.Array], epochs: int, size: int, rows=None
):
    """`epochs` shuffled passes of `step` over minibatches of `batch` -> (state, mean metrics).

    Shared by PPO and GRPO. The shuffling key is split off the state's rng, so it checkpoints.
    rows: the minibatches' sharding (align.rl.loop.rl_shardings(...)[1]); None on one device.
    """
    serial = distributed.one_program_at_a_time()
    history = []
    for _ in range(epochs):
        rng, perm_rng = jax.random.split(state.rng)
        state = state.replace(rng=rng)
        for mb in minibatches(batch, size, perm_rng, rows):
            state, metrics = step(state, mb)
            history.append({k: v for k, v in metrics.items() if k not in ("weight", "finite")})
            if serial:
                jax.block_until_ready(metrics)
    return state, _mean_metrics(history)


@jax.jit
def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, jax.Array]:
    # One program for the means: a running sum in eager ops is a program per metric and step, all in
    # flight at once beside the train steps (see distributed.one_program_at_a_time).
    return {k: sum(m[k] for m in history) / len(history) for k in history[0]}


def split_rng(state: TrainState) -> tuple[TrainState, jax.Array]:
    """(state with a fresh rng, a key for this iteration's sampling)."""
    rng, sample_rng = jax.random.split(state.rng)
    return state.replace(rng=rng), sample_rng


def create_ppo_state(
    policy: Decoder,
    value: ScoreModel,
    optimizer: optax.GradientTransformation,
    *,
    seed: int = 0,
    trainable=nnx.Param,
    mesh=None,
) -> TrainState:
    """A TrainState of PolicyAndValue(policy, value) with its own copy of the weights, on `mesh` (see
    align.rl.loop.owned_train_state: `policy` may go on serving as the frozen reference)."""
    model = PolicyAndValue(policy, value)
    return owned_train_state(model, optimizer, seed=seed, trainable=trainable, mesh=mesh)


def make_ppo_iteration(
    config: PPOConfig,
    optimizer: optax.GradientTransformation,
    reference: Decoder | FromState,
    reward_fn: RewardFn | FromState,
    *,
    shardings: tuple | None = None,
    layout: RolloutRows | None = None,
):
    """iterate(state, prompts, kl_coef) -> (state, kl_coef, metrics) for align.rl.loop.rl_loop.

    `state` is a TrainState of a PolicyAndValue model; `prompts` a right-padded prompt batch
    ({"tokens" [B, P], "lengths" [B]}). shardings: align.rl.loop.rl_shardings(state, mesh): the state
    as it is placed, and the rows of the prompts, the rollout and every minibatch split over the data
    axes (the reference and reward models must live on the same mesh); None: one device.
    layout: align.rl.feed.rollout_rows(...) when each process passes only its rows of `prompts`.
    """
    rows = None if shardings is None else shardings[1]
    step = make_train_step(
        functools.partial(ppo_loss, config=config),
        optimizer,
        grad_accum=config.grad_accum,
        shardings=shardings,
    )
    step = placed(step, rows)
    controller = config.kl_controller()

    def iterate(state: TrainState, prompts: Mapping, kl_coef: jax.Array):
        state, sample_rng = split_rng(state)
        model = state.model()
        tokens, lengths = place_rollout_prompts(prompts, 1, rows, layout)
        rollout, metrics = make_rollout(
            model.policy,
            resolve(reference, state),
            model.value,
            resolve(reward_fn, state),
            tokens,
            lengths,
            config.rollout,
            sample_rng,
        )
        advantages, returns, adv_metrics = ppo_advantages(rollout, kl_coef, config)
        batch = {**rollout.as_batch(), "advantages": advantages, "returns": returns}
        state, update_metrics = optimize_epochs(
            step, state, batch, config.ppo_epochs, config.minibatch_size, rows
        )
        kl_coef = controller.update(kl_coef, adv_metrics["kl/seq"], rollout.batch_size)
        return state, kl_coef, {**metrics, **adv_metrics, **update_metrics}

    return in_mesh(iterate, rows)
