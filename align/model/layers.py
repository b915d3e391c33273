"""Building blocks: RMSNorm, embedder, gated MLP and rotary embeddings. Every Param names its axes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from align.model import axes as ax


def param(rngs: nnx.Rngs, shape, names, dtype, scale: float | None = None) -> nnx.Param:
    """A normal(0, scale) parameter tagged with logical axis `names` (scale defaults to fan-in**-0.5)."""
    std = shape[0] ** -0.5 if scale is None else scale
    return nnx.Param(std * jax.random.normal(rngs.params(), shape, dtype), axes=tuple(names))


class RMSNorm(nnx.Module):
    """y = x / sqrt(mean(x^2) + eps) * (offset + w); Gemma uses offset 1 (w starts at 0), Llama 0."""

    def __init__(self, dim: int, *, eps: float, offset: float, dtype=jnp.float32):
        self.eps, self.offset = eps, offset
        self.scale = nnx.Param(jnp.zeros((dim,), dtype) if offset else jnp.ones((dim,), dtype), axes=(ax.NORM,))

    def __call__(self, x: jax.Array) -> jax.Array:
        # Normalise in float32 whatever the compute dtype: the mean of squares overflows bf16 easily.
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * (self.offset + self.scale[...].astype(jnp.float32))).astype(x.dtype)


class Embedder(nnx.Module):
    """Token table [V, D]; also the unembedding when embeddings are tied."""

    def __init__(self, vocab_size: int, dim: int, *, scale_by_sqrt_dim: bool, rngs: nnx.Rngs, dtype):
        # std D**-0.5: after the sqrt(D) input scaling activations have unit scale, and tied logits O(1).
        self.table = param(rngs, (vocab_size, dim), (ax.VOCAB, ax.EMBED), dtype, scale=dim**-0.5)
        self.scale_by_sqrt_dim = scale_by_sqrt_dim

    def encode(self, tokens: jax.Array, dtype) -> jax.Array:
        x = jnp.take(self.table[...], tokens, axis=0).astype(dtype)  # [B, T, D]
        if self.scale_by_sqrt_dim:
            # HF rounds sqrt(D) to the activation dtype before multiplying; do the same for parity.
            x = x * jnp.asarray(x.shape[-1] ** 0.5, dtype)
        return x

    def unembed_matrix(self) -> jax.Array:
        return self.table[...]  # [V, D]


class MLP(nnx.Module):
    """Gated MLP: down(act(x @ gate) * (x @ up)); GeGLU for Gemma (tanh gelu), SwiGLU for Llama."""

    def __init__(self, dim: int, hidden: int, *, activation: str, rngs: nnx.Rngs, dtype):
        self.gate = param(rngs, (dim, hidden), (ax.EMBED, ax.MLP), dtype)
        self.up = param(rngs, (dim, hidden), (ax.EMBED, ax.MLP), dtype)
        self.down = param(rngs, (hidden, dim), (ax.MLP, ax.EMBED), dtype)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        dt = x.dtype
        gate = jnp.einsum("BTD,DF->BTF", x, self.gate[...].astype(dt))
        up = jnp.einsum("BTD,DF->BTF", x, self.up[...].astype(dt))
        act = jax.nn.gelu(gate, approximate=True) if self.activation == "gelu_tanh" else jax.nn.silu(gate)
        return jnp.einsum("BTF,FD->BTD", act * up, self.down[...].astype(dt))


def apply_rope(x: jax.Array, positions: jax.Array, base: float, scale: float = 1.0) -> jax.Array:
    """Rotary embedding, 'rotate half' layout (as HF Gemma/Llama): x [B, T, *, H], positions [B, T]."""
    head_dim = x.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))  # [H/2]
    angles = (positions.astype(jnp.float32) / scale)[..., None] * inv_freq  # [B, T, H/2]
    angles = angles.reshape(angles.shape[:2] + (1,) * (x.ndim - 3) + angles.shape[-1:])
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
