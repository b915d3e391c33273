"""Next-token selection: greedy, temperature, top-k and top-p (nucleus), as one pure function."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. temperature 0 means greedy; top_k / top_p filter before sampling."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def scaled_logprobs(logits: jax.Array, config: SamplingConfig) -> jax.Array:
    """log softmax(logits / temperature) [B, V] in float32: the policy's log-probs that RL uses."""
    logits = logits.astype(jnp.float32)
    if not config.greedy:
        logits = logits / config.temperature
    return jax.nn.log_softmax(logits, axis=-1)


# Filtered-out tokens get a large finite negative rather than -inf, so noise added to them stays finite.
_DROPPED = -1e30


def _keep_indices(shape, rows_idx) -> jax.Array:
    """Boolean [B, V] mask that is True at the given per-row token indices [B, k]."""
    rows = jnp.arange(shape[0])[:, None]
    return jnp.zeros(shape, bool).at[rows, rows_idx].set(True)


def _filter(logprobs: jax.Array, config: SamplingConfig) -> jax.Array:
    """Drop tokens outside top-k, then outside the top-p nucleus of what is left (HF's order).

    Masks are built from indices, never by comparing values against a threshold: XLA may recompute
    log_softmax in two fusions that differ in the last bit, and `x < max(x)` then drops the maximum.
    """
    if config.top_k is not None:
        _, idx = jax.lax.top_k(logprobs, config.top_k)
        logprobs = jnp.where(_keep_indices(logprobs.shape, idx), logprobs, _DROPPED)
    if config.top_p is not None and config.top_p < 1.0:
        order = jnp.argsort(-logprobs, axis=-1)
        probs = jax.nn.softmax(jnp.take_along_axis(logprobs, order, axis=-1), axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the token that crosses it is kept)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < config.top_p
        idx = jnp.where(keep_sorted, order, order[:, :1])  # dropped slots point at the top token
        logprobs = jnp.where(_keep_indices(logprobs.shape, idx), logprobs, _DROPPED)
    return logprobs


def sample_next(logits: jax.Array, rng: jax.Array, config: SamplingConfig) -> tuple[jax.Array, jax.Array]:
    """logits [B, V] -> (token [B], its log-prob under softmax(logits / T) [B])."""
    logprobs = scaled_logprobs(logits, config)
    if config.greedy:
        token = jnp.argmax(logprobs, axis=-1)
    else:
        # Gumbel-max: argmax(log p + Gumbel noise) is a draw from p.
        noise = jax.random.gumbel(rng, logprobs.shape, jnp.float32)
        token = jnp.argmax(_filter(logprobs, config) + noise, axis=-1)
    return token.astype(jnp.int32), jnp.take_along_axis(logprobs, token[:, None], axis=-1)[:, 0]
