"""LoRA adapters on a decoder's einsum weights (Hu et al. 2021, arXiv:2106.09685).

For a weight W viewed as a matrix [I, O] (its input axes, its output axes):

    W' = W + (alpha / r) * A @ B,    A [I, r] ~ N(0, 1/I),  B [r, O] = 0

so a fresh adapter changes nothing. The decoder multiplies its weights inside einsums it owns, so the
adapter is applied to the weight, not to the activations: x W' = x W + (alpha/r) (x A) B exactly, at
the cost of forming W' once per forward (cheap next to the activations for r << D). Gradients reach
only A and B (nnx.LoRAParam): split the model with optim.trainable_filter("lora") to freeze the base.

A and B are float32 whatever the base weights' dtype: in bfloat16 (8 mantissa bits) Adam's small
updates to them would round away. W + delta is formed in float32 and cast to W's dtype once.

Input/output axes of a weight: its input is the first axis (q/k/v [D, N, H], gate/up [D, F]) unless its
last axis is the model dim, in which case that one is the output (o [N, H, D], down [F, D]).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from align.model import axes as ax
from align.model.decoder import Decoder

DEFAULT_TARGETS = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS  # weight path suffixes, e.g. "attn.q" matches layers.3.attn.q

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def matrix_split(shape: tuple[int, ...], axes: tuple | None) -> int:
    """Number of leading axes that form the input side I of the [I, O] view (see the module docstring)."""
    if axes and axes[-1] == ax.EMBED and len(shape) > 1:
        return len(shape) - 1
    return 1


class LoRA(nnx.Module):
    """One adapter: delta() = scale * (A @ B) reshaped to the adapted weight's shape."""

    def __init__(self, shape: tuple[int, ...], n_in: int, config: LoRAConfig, *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.shape, self.scale = tuple(shape), config.scale
        i, o = math.prod(shape[:n_in]), math.prod(shape[n_in:])
        self.a = nnx.LoRAParam(jax.random.normal(rngs.params(), (i, config.rank), dtype) * i**-0.5)
        self.b = nnx.LoRAParam(jnp.zeros((config.rank, o), dtype))

    def delta(self) -> jax.Array:
        return (self.scale * (self.a[...] @ self.b[...])).reshape(self.shape)


def _path(path) -> str:
    return ".".join(str(p) for p in path)


class LoRADecoder(nnx.Module):
    """A Decoder plus adapters; same call surface (__call__, hidden, logits, unembed_matrix, config)."""

    def __init__(self, base: Decoder, config: LoRAConfig, *, rngs: nnx.Rngs):
        self.base, self.config, self.lora_config = base, base.config, config
        paths, adapters = [], []
        for path, var in nnx.to_flat_state(nnx.state(base, nnx.Param)):
            name = _path(path)
            if any(name == t or name.endswith("." + t) for t in config.targets):
                meta = var.get_metadata()
                adapters.append(LoRA(var.shape, matrix_split(var.shape, meta.get("axes")), config, rngs=rngs))
                paths.append(name)
        if not paths:
            raise ValueError(f"LoRA targets {config.targets} match no parameter of the decoder")
        self.paths = tuple(paths)
        self.adapters = nnx.List(adapters)

    def merged(self) -> Decoder:
        """A Decoder whose weights are W + delta (a new module: the base is left untouched)."""
        graphdef, state = nnx.split(self.base)
        deltas = dict(zip(self.paths, (a.delta() for a in self.adapters)))

        def merge(w, delta):  # one rounding to W's dtype, not two (delta, then the sum)
            return (w.astype(jnp.float32) + delta.astype(jnp.float32)).astype(w.dtype)

        flat = [(path, var.replace(merge(var[...], deltas[_path(path)])) if _path(path) in deltas else var)
                for path, var in nnx.to_flat_state(state)]
        return nnx.merge(graphdef, nnx.from_flat_state(flat))

    def __call__(self, tokens, positions, segment_ids, cache=None, *, return_logits: bool = True,
                 attn_mask=None):
        return self.merged()(tokens, positions, segment_ids, cache, return_logits=return_logits,
                             attn_mask=attn_mask)

    def hidden(self, tokens, positions, segment_ids, *, attn_mask=None) -> jax.Array:
        return self.merged().hidden(tokens, positions, segment_ids, attn_mask=attn_mask)

    def logits(self, hidden: jax.Array) -> jax.Array:
        return self.merged().logits(hidden)

    def next_token_logits(self, hidden: jax.Array, *, vocab_major: bool = False) -> jax.Array:
        return self.merged().next_token_logits(hidden, vocab_major=vocab_major)

    def unembed_matrix(self) -> jax.Array:
        return self.merged().unembed_matrix()

    def for_decoding(self) -> Decoder:
        """The merged Decoder in decode layout: adapters folded in once, not at every decode step."""
        return self.merged().for_decoding()


def add_lora(base: Decoder, config: LoRAConfig, *, seed: int = 0) -> LoRADecoder:
    return LoRADecoder(base, config, rngs=nnx.Rngs(seed))


def merge_lora(model: LoRADecoder) -> Decoder:
    """A plain Decoder with the adapters folded into its weights (for export and fast inference)."""
    return model.merged()
