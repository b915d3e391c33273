"""LoRA adapters on a decoder's projection weights (Hu et al. 2021, arXiv:2106.09685).

For a weight W viewed as a matrix [I, O] (its input axes, its output axes):

    y = x W + (alpha / r) * (x A) B,    A [I, r] ~ N(0, 1/I),  B [r, O] = 0

so a fresh adapter changes nothing. Training forwards (__call__, hidden, logits, next_token_logits)
apply the adapter on the activations: each adapted weight of a layers.Projections module (q, k, v, o,
gate, up, down) gets its adapter attached to a throwaway copy of the base per forward, and
Projections.project adds the low-rank term. Why not the weight W' = W + (alpha/r) A B, which gives
the same function:
- a merge rounds W' to W's dtype: with bfloat16 weights (|W| ~ 0.02, spacing ~1e-4) the small early
  deltas round away and training would not change the outputs at all;
- the gradient would then pass through dW' = x^T dy, an [I, O] matmul per adapted weight, as costly as
  full fine-tuning's weight gradient; on the activations dA = x^T (dy B^T) (alpha/r) is [I, r].
Gradients reach only A and B (nnx.LoRAParam): split the model with optim.trainable_filter("lora").
Any other targeted weight (the embedding table, lm_head) is merged into the copy instead.

Dtypes: A and B are float32 whatever the base weights' dtype: in bfloat16 (8 mantissa bits) Adam's
small updates to them would round away. The low-rank term is computed and added in float32 (x W in
float32 too) and rounded to the activation dtype once. Merges (merged(), merge_lora, for_decoding,
export: fast inference) form W + delta in float32 and cast to W's dtype once.

Input/output axes of a weight: its input is the first axis (q/k/v [D, N, H], gate/up [D, F]) unless its
last axis is the model dim, in which case that one is the output (o [N, H, D], down [F, D]).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from align import checks
from align.model import axes as ax
from align.model.decoder import Decoder
from align.model.layers import Projections

DEFAULT_TARGETS = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS  # weight path suffixes, e.g. "attn.q" matches layers.3.attn.q

    def __post_init__(self):
        checks.at_least(self, 1, "rank")
        checks.positive_number(self, "alpha")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def matrix_split(shape: tuple[int, ...], axes: tuple | None) -> int:
    """Number of leading axes that form the input side I of the [I, O] view (see the module docstring)."""
    if axes and axes[-1] == ax.EMBED and len(shape) > 1:
        return len(shape) - 1
    return 1


class LoRA(nnx.Module):
    """One adapter: delta() = scale * (A @ B) reshaped to the adapted weight's shape.

    Also the adapter Projections.project applies on the activations (it reads a, b and scale).
    """

    def __init__(
        self, shape: tuple[int, ...], n_in: int, config: LoRAConfig, *, rngs: nnx.Rngs, dtype=jnp.float32
    ):
        self.shape, self.scale = tuple(shape), config.scale
        i, o = math.prod(shape[:n_in]), math.prod(shape[n_in:])
        self.a = nnx.LoRAParam(jax.random.normal(rngs.params(), (i, config.rank), dtype) * i**-0.5)
        self.b = nnx.LoRAParam(jnp.zeros((config.rank, o), dtype))

    def delta(self) -> jax.Array:
        return (self.scale * (self.a[...] @ self.b[...])).reshape(self.shape)


def _path(path) -> str:
    return ".".join(str(p) for p in path)


def _merge(w: jax.Array, delta: jax.Array) -> jax.Array:
    """W + delta rounded to W's dtype once (from float32), not twice (delta, then the sum)."""
    return (w.astype(jnp.float32) + delta.astype(jnp.float32)).astype(w.dtype)


class LoRADecoder(nnx.Module):
    """A Decoder plus adapters; same call surface (__call__, hidden, logits, unembed_matrix, config)."""

    def __init__(self, base: Decoder, config: LoRAConfig, *, rngs: nnx.Rngs):
        self.base, self.config, self.lora_config = base, base.config, config
        modules = {_path(p): m for p, m in nnx.iter_modules(base)}
        paths, adapters = [], []
        for path, var in nnx.to_flat_state(nnx.state(base, nnx.Param)):
            name = _path(path)
            if any(name == t or name.endswith("." + t) for t in config.targets):
                n_in = matrix_split(var.shape, var.get_metadata().get("axes"))
                owner, attr = _owner(modules, name)
                if _is_projection(owner, attr) and owner.n_in(attr) != n_in:
                    raise ValueError(
                        f"LoRA on {name}: matrix_split gives {n_in} input axes, its "
                        f"projection {owner.PROJECTIONS[attr]!r} {owner.n_in(attr)}"
                    )
                adapters.append(LoRA(var.shape, n_in, config, rngs=rngs))
                paths.append(name)
        if not paths:
            raise ValueError(f"LoRA targets {config.targets} match no parameter of the decoder")
        self.paths = tuple(paths)
        self.adapters = nnx.List(adapters)

    def adapted(self) -> Decoder:
        """A throwaway Decoder over the base's weights with the adapters applied on the activations.

        The adapters are attached to the copy's projection modules (their arrays are the adapters',
        so gradients reach A and B); a targeted weight that is no projection is merged into the copy.
        """
        # copy=True: new Variables over the same arrays (no data is copied), created at this trace
        # level, so that nnx.remat in the decoder may write them back (the base's frozen Variables,
        # e.g. a train step's, can come from an outer trace) and the base's own are never mutated.
        this = nnx.merge(*nnx.split(self), copy=True)
        model = this.base
        modules = {_path(p): m for p, m in nnx.iter_modules(model)}
        for name, adapter in zip(this.paths, this.adapters):
            owner, attr = _owner(modules, name)
            if _is_projection(owner, attr):
                owner.attach_adapter(attr, adapter)
            else:
                var = getattr(owner, attr)
                setattr(owner, attr, var.replace(_merge(var[...], adapter.delta())))
        return model

    def merged(self) -> Decoder:
        """A Decoder whose weights are W + delta (a new module: the base is left untouched)."""
        graphdef, state = nnx.split(self.base)
        deltas = dict(zip(self.paths, (a.delta() for a in self.adapters)))
        flat = [
            (path, var.replace(_merge(var[...], deltas[_path(path)])) if _path(path) in deltas else var)
            for path, var in nnx.to_flat_state(state)
        ]
        return nnx.merge(graphdef, nnx.from_flat_state(flat), copy=True)  # copy=True: see adapted()

    def __call__(
        self, tokens, positions, segment_ids, cache=None, *, return_logits: bool = True, attn_mask=None
    ):
        return self.adapted()(
            tokens, positions, segment_ids, cache, return_logits=return_logits, attn_mask=attn_mask
        )

    def hidden(self, tokens, positions, segment_ids, *, attn_mask=None) -> jax.Array:
        return self.adapted().hidden(tokens, positions, segment_ids, attn_mask=attn_mask)

    def logits(self, hidden: jax.Array) -> jax.Array:
        return self.adapted().logits(hidden)

    def next_token_logits(self, hidden: jax.Array, *, vocab_major: bool = False) -> jax.Array:
        return self.adapted().next_token_logits(hidden, vocab_major=vocab_major)

    def unembed_matrix(self) -> jax.Array:
        return self.adapted().unembed_matrix()

    def for_decoding(
        self, n_positions: int | None = None, *, out_first: bool = False, weight_dtype=None
    ) -> Decoder:
        """The merged Decoder in decode layout: adapters folded in once, not at every decode step."""
        return self.merged().for_decoding(n_positions, out_first=out_first, weight_dtype=weight_dtype)


def _owner(modules: dict[str, nnx.Module], name: str) -> tuple[nnx.Module, str]:
    """(module holding weight `name`, its attribute name): "layers.0.attn.q" -> (that Attention, "q")."""
    parent, _, attr = name.rpartition(".")
    return modules[parent], attr


def _is_projection(module: nnx.Module, attr: str) -> bool:
    return isinstance(module, Projections) and attr in module.PROJECTIONS


def add_lora(base: Decoder, config: LoRAConfig, *, seed: int = 0) -> LoRADecoder:
    return LoRADecoder(base, config, rngs=nnx.Rngs(seed))


def merge_lora(model: LoRADecoder) -> Decoder:
    """A plain Decoder with the adapters folded into its weights (for export and fast inference)."""
    return model.merged()
