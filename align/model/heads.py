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


class ScoreModel(nnx.Module):
    """Decoder backbone + scalar head: per-token scores (values) or one score per sequence (rewards)."""

    def __init__(self, backbone: Decoder, *, rngs: nnx.Rngs):
        self.backbone = backbone
        self.head = ScalarHead(backbone.config.embed_dim, rngs=rngs)

    def token_scores(self, tokens, positions, segment_ids) -> jax.Array:
        """[B, T] score after every token (PPO's value estimates)."""
        return self.head(self.backbone.hidden(tokens, positions, segment_ids))

    def last_hidden(self, tokens, positions, segment_ids) -> jax.Array:
        """[B, D] hidden state at the last non-padding token: what the head reads for a reward."""
        hidden = self.backbone.hidden(tokens, positions, segment_ids)  # [B, T, D]
        return jnp.take_along_axis(hidden, last_token_index(segment_ids)[:, None, None], axis=1)[:, 0]

    def __call__(self, tokens, positions, segment_ids) -> jax.Array:
        """[B] score at the last non-padding token of each right-padded row (a reward)."""
        scores = self.token_scores(tokens, positions, segment_ids)
        return jnp.take_along_axis(scores, last_token_index(segment_ids)[:, None], axis=1)[:, 0]
