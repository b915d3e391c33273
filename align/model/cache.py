"""The decoding KV cache: a fixed-size pytree, so jit never recompiles between decode steps."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from align.model.config import ModelConfig


@flax.struct.dataclass
class Cache:
    """Keys and values per layer plus the per-slot bookkeeping the attention mask needs.

    k, v: tuple over layers of [B, S, K, H]. positions / segment_ids: [B, S] for every slot
    (segment 0 = empty or padding, never attended). index: the next slot to write (scalar).
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    positions: jax.Array
    segment_ids: jax.Array
    index: jax.Array

    @property
    def size(self) -> int:  # S
        return self.positions.shape[1]


def init_cache(config: ModelConfig, batch: int, size: int, dtype=jnp.float32) -> Cache:
    shape = (batch, size, config.num_kv_heads, config.head_dim)  # [B, S, K, H]
    zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
    return Cache(
        k=zeros,
        v=zeros,
        positions=jnp.zeros((batch, size), jnp.int32),
        segment_ids=jnp.zeros((batch, size), jnp.int32),
        index=jnp.zeros((), jnp.int32),
    )
