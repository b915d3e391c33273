"""Sequence rewards for RL: the RewardFn protocol, rule-based rewards, and weighted mixtures.

A reward function sees the prompt and the sampled response as token arrays and returns one score
per row. It runs on the host between sampling and the jitted scoring pass, so it may be a jitted
reward model (align.rl.reward_model.ScoreModelReward), a jnp expression or plain numpy.

Shapes: B batch, P prompt length (right-padded), M response length (right-padded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp

from align import distributed


class RewardFn(Protocol):
    """(prompt [B, P] int32, prompt_mask [B, P], response [B, M] int32, response_mask [B, M]) -> [B].

    Masks are 1 on real tokens. The response mask covers the stop token when one was sampled.
    """

    def __call__(
        self, prompt: jax.Array, prompt_mask: jax.Array, response: jax.Array, response_mask: jax.Array
    ) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class TokenFraction:
    """r = (number of response tokens equal to `token_id`) / max(response length, 1).

    A reward with a known optimum (a response made only of `token_id` scores 1), for tests and
    toy tasks. `exclude` ids (e.g. the stop tokens) are removed from both counts.
    """

    token_id: int
    exclude: tuple[int, ...] = ()

    def __call__(self, prompt, prompt_mask, response, response_mask) -> jax.Array:
        del prompt, prompt_mask
        m = response_mask > 0
        for t in self.exclude:
            m = m & (response != t)
        hits = jnp.sum((response == self.token_id) & m, axis=-1)
        return hits / jnp.maximum(jnp.sum(m, axis=-1), 1)


@dataclasses.dataclass(frozen=True)
class LengthReward:
    """r = -|len(response) - target| / target: prefers responses of `target` tokens (stop included)."""

    target: int

    def __call__(self, prompt, prompt_mask, response, response_mask) -> jax.Array:
        del prompt, prompt_mask, response
        n = jnp.sum(response_mask > 0, axis=-1)
        return -jnp.abs(n - self.target) / self.target


@dataclasses.dataclass(frozen=True)
class Mixture:
    """r = sum_i w_i r_i: e.g. a helpfulness and a harmlessness reward model with their weights."""

    rewards: Sequence[RewardFn]
    weights: Sequence[float]

    def __post_init__(self):
        if len(self.rewards) != len(self.weights) or not self.rewards:
            raise ValueError(
                f"Mixture: {len(self.rewards)} rewards and {len(self.weights)} weights; need as many "
                "of each, at least one"
            )

    def __call__(self, prompt, prompt_mask, response, response_mask) -> jax.Array:
        total = 0.0
        for fn, w in zip(self.rewards, self.weights, strict=True):
            total = total + w * jnp.asarray(fn(prompt, prompt_mask, response, response_mask), jnp.float32)
        return total


def check_rewards(scores, batch: int, name: str = "reward_fn") -> jax.Array:
    """float32 [B] from whatever a RewardFn returned; a wrong shape or a NaN is an error, not a silent 0."""
    scores = jnp.asarray(scores, jnp.float32)
    if scores.shape != (batch,):
        raise ValueError(f"{name} returned shape {scores.shape}, expected [B]=({batch},)")
    if not bool(jnp.all(jnp.isfinite(scores))):
        # every process takes this branch (the check is global), so the gather below is collective
        raise ValueError(f"{name} returned non-finite rewards: {distributed.host_array(scores)}")
    return scores
