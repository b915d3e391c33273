"""Scalar heads on a decoder: the reward model's and PPO's value model's shared building block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from align.model import axes as ax
from align.model.decoder import Decoder


class ScalarHead(nnx.Module):
    """hidden [B, T, D] -> scores [B, T] (a linear map with bias)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        # Small init so a fresh head starts near 0 and does not swamp the KL term early in PPO.
        self.w = nnx.Param(
            jax.random.normal(rngs.params(), (dim,), param_dtype) * 0.01 * dim**-0.5, axes=(ax.EMBED,)
        )
        self.b = nnx.Param(jnp.zeros((), param_dtype), axes=())

    def __call__(self, hidden: jax.Array) -> jax.Array:
        return (
            jnp.einsum("BTD,D->BT", hidden.astype(jnp.float32), self.w[...].astype(jnp.float32)) + self.b[...]
        )


def last_token_index(mask: jax.Array) -> jax.Array:
    """[B] index of the last nonzero entry of each row of `mask` [B, T] (0 for an all-zero row).

    The one definition for every "last real token" read: the reward head on segment ids, the RLHF
    score on a response mask. By position, not by count, so it holds for any padding side.
    """
    positions = jnp.arange(mask.shape[-1])[None, :]  # [1, T]
    return jnp.max(jnp.where(mask != 0, positions, 0), axis=-1)


POOLS = ("last", "response_mean")  # how a ScoreModel turns per-token scores into one reward


def response_weights(response: jax.Array) -> jax.Array:
    """[B, T] float32 weights of a response mask [B, T]: 1 / (response tokens) on each, 0 elsewhere (an
    all-zero row stays all zero)."""
    response = response.astype(jnp.float32)
    return response / jnp.maximum(response.sum(-1, keepdims=True), 1.0)


def pool_tokens(x: jax.Array, segment_ids: jax.Array, response: jax.Array | None, pool: str) -> jax.Array:
    """x [B, T, ...] (per-token scores or hidden states) -> [B, ...], the one pooling of every reward.

    last: x at the last non-padding token (segment_ids [B, T]); HF's sequence classifiers read it there.
    response_mean: the mean of x over the response tokens (response [B, T], nonzero on them).
    """
    if pool == "last":
        index = last_token_index(segment_ids).reshape((-1, 1) + (1,) * (x.ndim - 2))  # [B, 1, ...]
        return jnp.take_along_axis(x, index, axis=1)[:, 0]
    if pool != "response_mean":
        raise ValueError(f"pool={pool!r}: expected one of {POOLS}")
    if response is None:
        raise ValueError("pool='response_mean' needs the response mask of every row")
    return jnp.einsum("BT,BT...->B...", response_weights(response), x.astype(jnp.float32))


class ScoreModel(nnx.Module):
    """Decoder backbone + scalar head: per-token scores (values) or one score per sequence (rewards).

    pool: how a reward is read off the per-token scores (pool_tokens): "last" (the score at the last
    token, as HF's ...ForSequenceClassification computes it) or "response_mean" (the mean score over
    the response tokens, = the head on the mean response hidden state: the head is linear).
    """

    def __init__(self, backbone: Decoder, *, rngs: nnx.Rngs, pool: str = "last"):
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r}: expected one of {POOLS}")
        self.backbone = backbone
        self.head = ScalarHead(backbone.config.embed_dim, rngs=rngs)
        self.pool = pool

    def token_scores(self, tokens, positions, segment_ids) -> jax.Array:
        """[B, T] score after every token (PPO's value estimates)."""
        return self.head(self.backbone.hidden(tokens, positions, segment_ids))

    def pooled_hidden(self, tokens, positions, segment_ids, response=None) -> jax.Array:
        """[B, D] hidden state pooled as the reward is (self.pool): the head's input features."""
        hidden = self.backbone.hidden(tokens, positions, segment_ids)  # [B, T, D]
        return pool_tokens(hidden, segment_ids, response, self.pool)

    def __call__(self, tokens, positions, segment_ids, response=None) -> jax.Array:
        """[B] reward of each right-padded row; response [B, T] marks the response tokens (needed by
        pool="response_mean", ignored by "last")."""
        scores = self.token_scores(tokens, positions, segment_ids)  # [B, T]
        return pool_tokens(scores, segment_ids, response, self.pool)
