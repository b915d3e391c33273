"""The decoding KV cache: a fixed-size pytree, so jit never recompiles between decode steps."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from align.model.config import ModelConfig


@flax.struct.dataclass
class Cache:
    """Keys and values per layer plus the per-slot bookkeeping the attention mask needs.

    k: tuple over layers of [B*K, S, H]; v: tuple over layers of [B*K, H, S] (row b*K + kv head).
    positions / segment_ids: [B, S] for every slot (segment 0 = empty or padding, never attended).
    index: the next slot to write (scalar).

    Why these layouts (decode loop on XLA:CPU): the attention dots then read the cache in place. With
    [B, S, K, H] XLA squeezed the unit K axis between the in-place write and the dot, duplicated the
    write and copied every cache buffer two or three times a step, and transposed the values to
    [B, H, S] for the probs x values dot: together almost a tenth of a decode step
    (benchmarks/RESULTS.md, generation).
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
    rows, H = batch * config.num_kv_heads, config.head_dim
    return Cache(
        k=tuple(jnp.zeros((rows, size, H), dtype) for _ in range(config.num_layers)),  # [B*K, S, H]
        v=tuple(jnp.zeros((rows, H, size), dtype) for _ in range(config.num_layers)),  # [B*K, H, S]
        positions=jnp.zeros((batch, size), jnp.int32),
        segment_ids=jnp.zeros((batch, size), jnp.int32),
        index=jnp.zeros((), jnp.int32),
    )
