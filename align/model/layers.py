"""Building blocks: RMSNorm, embedder, gated MLP and rotary embeddings. Every Param names its axes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from align.model import axes as ax


def _letters(spec: str) -> tuple[str, str, str, str, str]:
    """(x, w, out, contracted, w's out) letters of a dense() spec: 'BTD,DNH->BTNH' -> (.., 'D', 'NH')."""
    ins, out = spec.replace(" ", "").split("->")
    xs, ws = ins.split(",")
    contracted = "".join(c for c in xs if c in ws and c not in out)
    return xs, ws, out, contracted, "".join(c for c in ws if c not in contracted)


def dense(
    spec: str, x: jax.Array, w: jax.Array, *, weight_first: bool = False, preferred_element_type=None
) -> jax.Array:
    """`jnp.einsum(spec, x, w)` for a projection, computed as one 2-D matmul [X, I] @ [I, O].

    `spec` names the letters as einsum does, e.g. "BTD,DNH->BTNH" or "BTD,VD->BTV": x is [*lead, *in],
    w is [*in, *out] or [*out, *in], the result [*lead, *out]. The lead letters (B, T) fold into X
    and the in/out letters of w into I/O before the dot and unfold after it.

    Why not plain einsum: for the weight gradient of a 3-D einsum (a contraction over both B and T)
    XLA:CPU fuses a transposing copy of the [B, T, F] activation gradient into its elementwise
    producer, a strided write that made the weight-gradient dots markedly slower than 2-D dots
    (measured on gemma3-270m's MLP: benchmarks/RESULTS.md, train step).
    Folding the leading axes keeps the batch axis' sharding (it is the major one).

    weight_first (w stored [*out, *in] only): compute [O, I] x [X, I] -> [O, X], then transpose that
    small result. For decode steps (X = a few rows) on XLA:CPU: with the weight as the dot's left
    operand and its contraction axis minor, the weight streams through once instead of being packed,
    which reads it faster on CPUs where the dots are memory-bound (benchmarks/RESULTS.md). The
    barrier keeps layout assignment from folding the transpose back into the dot (which undoes it).

    preferred_element_type: the dot's accumulation and output dtype, as in jnp.einsum (None: the
    operands' dtype), e.g. float32 logits from bf16 operands.
    """
    xs, ws, out, contracted, w_out = _letters(spec)
    lead = xs[: len(xs) - len(contracted)]
    if xs != lead + contracted or out != lead + w_out or ws not in (contracted + w_out, w_out + contracted):
        raise ValueError(
            f"dense: {spec!r} is not [*lead, *in] x [*in, *out] (or [*out, *in]) -> [*lead, *out]"
        )
    if x.ndim != len(xs) or w.ndim != len(ws):
        raise ValueError(f"dense: {spec!r} does not fit x {x.shape} and w {w.shape}")
    n_lead, n_in = x.shape[: len(lead)], math.prod(x.shape[len(lead) :])
    w_in_first = ws.startswith(contracted)
    out_shape = w.shape[len(contracted) :] if w_in_first else w.shape[: len(w_out)]
    w2 = w.reshape((n_in, -1) if w_in_first else (-1, n_in))  # [I, O] or [O, I]
    x2 = x.reshape(-1, n_in)  # [X, I]
    if weight_first:
        if w_in_first:
            raise ValueError(f"dense: weight_first needs w stored [*out, *in]; {spec!r} has it [*in, *out]")
        y_ox = jax.lax.dot_general(
            w2, x2, (((1,), (1,)), ((), ())), preferred_element_type=preferred_element_type
        )  # [O, X]
        y = jax.lax.optimization_barrier(y_ox).T
    else:
        y = jax.lax.dot_general(
            x2,
            w2,
            (((1,), (0,) if w_in_first else (1,)), ((), ())),
            preferred_element_type=preferred_element_type,
        )
    return y.reshape(*n_lead, *out_shape)


def out_first_spec(spec: str) -> str:
    """The same projection with its weight stored [*out, *in]: 'BTD,DF->BTF' -> 'BTD,FD->BTF'."""
    xs, _, out, w_in, w_out = _letters(spec)
    return f"{xs},{w_out}{w_in}->{out}"


def low_rank(x: jax.Array, a: jax.Array, b: jax.Array, scale: float, n_lead: int) -> jax.Array:
    """scale * (x A) B in float32: x [*lead, *in], a [I, r], b [r, O] -> [*lead, O] (I = prod(in)).

    Float32 whatever x's dtype, because early in training this term is far below x W and must keep
    its own significant digits. x enters the first dot as it is (a bf16 operand with float32
    accumulation, not a float32 copy), so the backward keeps x itself for dA. Both dots are thin (rank
    r): the [I, O] product A B is never formed, forwards or backwards.
    """
    lead = x.shape[:n_lead]
    x2 = x.reshape(math.prod(lead), -1)  # [X, I]
    h = dense("XI,Ir->Xr", x2, a.astype(jnp.float32), preferred_element_type=jnp.float32) * scale  # [X, r]
    return dense("Xr,rO->XO", h, b.astype(jnp.float32)).reshape(*lead, b.shape[-1])  # [*lead, O]


# A low-rank adapter on projection `name` is the attribute ADAPTER_PREFIX + name (see Projections).
ADAPTER_PREFIX = "lora_"


class Projections:
    """Mixin for modules whose weights are dense() projections named in PROJECTIONS {attribute: spec}.

    Weights are stored as the specs say ([*in, *out]); `to_out_first()` transposes them in place to
    [*out, *in] for decode steps on CPU (dense's weight_first), which is what
    `Decoder.for_decoding(out_first=True)` does to a throwaway copy of the model (it pays on some
    CPUs, not on others: see there). Training never sees that layout.

    Adapters: `attach_adapter(name, adapter)` makes project(name, x) return
    dense(x, W) + scale * (x A) B, where the adapter has `a` [I, r], `b` [r, O] (arrays or Variables)
    and a float `scale`, with I and O the weight's input and output axes flattened as dense() folds
    them (q [D, N, H]: I = D, O = N*H; o [N, H, D]: I = N*H, O = D). align.training.lora attaches
    them to a throwaway copy of the model per forward; this module knows nothing of LoRA itself.
    """

    PROJECTIONS: dict[str, str] = {}
    out_first: bool = False
    # set by store_weights: the weights are stored in it and each dot multiplies them as they are
    weight_dtype: str | None = None

    def n_in(self, name: str) -> int:
        """How many leading axes of weight `name` (as stored for training) are its input axes."""
        return len(_letters(self.PROJECTIONS[name])[3])

    def attach_adapter(self, name: str, adapter) -> None:
        """Make project(name, x) add adapter's scale * (x A) B (see the class docstring)."""
        if name not in self.PROJECTIONS:
            raise KeyError(f"{type(self).__name__} has no projection {name!r} (has {list(self.PROJECTIONS)})")
        setattr(self, ADAPTER_PREFIX + name, adapter)

    def project(self, name: str, x: jax.Array) -> jax.Array:
        spec = self.PROJECTIONS[name]
        w = getattr(self, name)[...]
        adapter = getattr(self, ADAPTER_PREFIX + name, None)
        # With an adapter, x W comes out in float32 and the float32 low-rank term is added before the one
        # rounding to x's dtype: added to an already rounded bf16 x W, a term below half of bf16's
        # spacing there would round back to the same value, as a bf16 merge W + delta drops it.
        acc = None if adapter is None and self.weight_dtype is None else jnp.float32
        # store_weights: x meets the weight in its storage dtype, products summed in float32. An
        # upcast weight instead would be a float32 copy written and read again at every call.
        xw = x if self.weight_dtype is None else x.astype(w.dtype)
        w = w if self.weight_dtype is not None else w.astype(x.dtype)
        if self.out_first:
            y = dense(out_first_spec(spec), xw, w, weight_first=True, preferred_element_type=acc)
        else:
            y = dense(spec, xw, w, preferred_element_type=acc)
        if adapter is None:
            return y.astype(x.dtype)
        delta = low_rank(x, adapter.a[...], adapter.b[...], adapter.scale, x.ndim - self.n_in(name))
        return (y + delta.reshape(y.shape)).astype(x.dtype)

    def to_out_first(self) -> None:
        if self.out_first:
            return
        for name, spec in self.PROJECTIONS.items():
            var = getattr(self, name)
            _, ws, _, w_in, w_out = _letters(spec)
            perm = [ws.index(c) for c in w_out + w_in]
            axes = var.get_metadata().get("axes")
            setattr(
                self,
                name,
                nnx.Param(
                    jnp.transpose(var[...], perm), axes=None if axes is None else tuple(axes[i] for i in perm)
                ),
            )
        self.out_first = True

    def store_weights(self, dtype) -> None:
        """Store every projection weight in `dtype` (e.g. bfloat16 for decode steps) and from then on
        multiply it in that dtype: the activation is rounded to it at the dot's input, the products
        summed and returned in float32, then cast to the activation dtype (Decoder.for_decoding's
        weight_dtype; the copy's weights only, never training's)."""
        for name in self.PROJECTIONS:
            setattr(self, name, cast_param(getattr(self, name), dtype))
        self.weight_dtype = jnp.dtype(dtype).name


def cast_param(var: nnx.Variable, dtype) -> nnx.Param:
    """A new Param holding var's value in `dtype`, with var's logical axes."""
    return nnx.Param(var[...].astype(dtype), axes=var.get_metadata().get("axes"))


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
    """Gemma-style soft-capping `cap * tanh(x / cap)`; identity when `cap` is None."""
    return x if cap is None else cap * jnp.tanh(x / cap)


def param(rngs: nnx.Rngs, shape, names, dtype, scale: float | None = None) -> nnx.Param:
    """A normal(0, scale) parameter tagged with logical axis `names` (scale defaults to fan-in**-0.5)."""
    std = shape[0] ** -0.5 if scale is None else scale
    return nnx.Param(std * jax.random.normal(rngs.params(), shape, dtype), axes=tuple(names))


class RMSNorm(nnx.Module):
    """y = x / sqrt(mean(x^2) + eps) * (offset + w); Gemma uses offset 1 (w starts at 0), Llama 0."""

    def __init__(self, dim: int, *, eps: float, offset: float, dtype=jnp.float32):
        self.eps, self.offset = eps, offset
        self.scale = nnx.Param(
            jnp.zeros((dim,), dtype) if offset else jnp.ones((dim,), dtype), axes=(ax.NORM,)
        )

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


class MLP(Projections, nnx.Module):
    """Gated MLP: down(act(x @ gate) * (x @ up)); GeGLU for Gemma (tanh gelu), SwiGLU for Llama."""

    PROJECTIONS = {"gate": "BTD,DF->BTF", "up": "BTD,DF->BTF", "down": "BTF,FD->BTD"}

    def __init__(self, dim: int, hidden: int, *, activation: str, rngs: nnx.Rngs, dtype):
        self.gate = param(rngs, (dim, hidden), (ax.EMBED, ax.MLP), dtype)
        self.up = param(rngs, (dim, hidden), (ax.EMBED, ax.MLP), dtype)
        self.down = param(rngs, (hidden, dim), (ax.MLP, ax.EMBED), dtype)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        gate, up = self.project("gate", x), self.project("up", x)
        act = jax.nn.gelu(gate, approximate=True) if self.activation == "gelu_tanh" else jax.nn.silu(gate)
        return self.project("down", act * up)


def _rope_angles(positions: jax.Array, head_dim: int, base: float, scale: float) -> jax.Array:
    """positions [...] -> rotation angles [..., H/2] in float32."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))  # [H/2]
    return (positions.astype(jnp.float32) / scale)[..., None] * inv_freq


def rope_table(n_positions: int, head_dim: int, base: float, scale: float = 1.0) -> jax.Array:
    """[n_positions, 2, H/2]: sin and cos of the rotary angles of positions 0 .. n_positions - 1."""
    angles = _rope_angles(jnp.arange(n_positions), head_dim, base, scale)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=1)


def apply_rope(
    x: jax.Array, positions: jax.Array, base: float, scale: float = 1.0, table: jax.Array | None = None
) -> jax.Array:
    """Rotary embedding, 'rotate half' layout (as HF Gemma/Llama): x [B, T, *, H], positions [B, T].

    table: rope_table(n, H, base, scale) with n above every position, to look the sin and cos up rather
    than compute them. XLA fuses sin and cos into the rotation and evaluates them once per element of x
    (x [B, 1, 4, 256] takes 4 * 2 evaluations per angle); a table made before a decode loop takes them
    out of the loop (a few % more decode tokens/s at batch 32; benchmarks/RESULTS.md). Same numbers.
    """
    if table is None:
        angles = _rope_angles(positions, x.shape[-1], base, scale)  # [B, T, H/2]
        sin, cos = jnp.sin(angles), jnp.cos(angles)
    else:
        sin, cos = table[positions, 0], table[positions, 1]  # [B, T, H/2]
    shape = sin.shape[:2] + (1,) * (x.ndim - 3) + sin.shape[-1:]
    sin, cos = sin.reshape(shape), cos.reshape(shape)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
