"""Grouped-query attention (MQA when K == 1) with RoPE, QK-norm, soft-capping and sliding windows."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from flax import nnx

from align.model import axes as ax
from align.model.config import ModelConfig
from align.model.layers import Projections, RMSNorm, apply_rope, param, rope_table

# Finite, so that a query row with every key masked (a padding query) gives no NaN.
NEG_INF = -2.3819763e38
# Most queries per cache row (G * T) that take one matrix-vector product each (Attention._attend_cache).
MAX_PER_QUERY_DOTS = 8
# How a cache-free pass computes attention: XLA's einsums (any backend) or cuDNN's fused flash kernel.
IMPLEMENTATIONS = ("xla", "cudnn")


def attention_mask(
    q_slots: jax.Array,  # [T] or [B, T]  slot index of each query in the key sequence
    q_positions: jax.Array,  # [B, T]
    q_segments: jax.Array,  # [B, T]
    k_positions: jax.Array,  # [B, S]
    k_segments: jax.Array,  # [B, S]
    window: int | None,
    k_slots: jax.Array | None = None,  # [S] slot index of each key; default 0..S-1
) -> jax.Array:
    """[B, T, S] boolean: causal by slot, same non-zero segment, and inside the sliding window.

    One rule for training (keys = the queries, packed documents separated by segment id) and for
    decoding (keys = the cache slots).
    """
    k_slots = jnp.arange(k_positions.shape[1]) if k_slots is None else k_slots
    q_slots = jnp.broadcast_to(q_slots, q_positions.shape)
    mask = k_slots[None, None, :] <= q_slots[:, :, None]
    mask &= q_segments[:, :, None] == k_segments[:, None, :]
    mask &= k_segments[:, None, :] != 0
    if window is not None:
        mask &= window_mask(q_positions, k_positions, window)
    return mask


def window_mask(q_positions: jax.Array, k_positions: jax.Array, window: int | None) -> jax.Array:
    """[B, T, S] boolean: the key lies inside the query's sliding window (all True without one)."""
    if window is None:
        return jnp.ones(q_positions.shape + k_positions.shape[1:], bool)
    return (q_positions[:, :, None] - k_positions[:, None, :]) < window


def check_impl(config: ModelConfig, impl: str) -> None:
    """Raise ValueError unless attention implementation `impl` can run `config`."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"Attention: impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    if impl == "cudnn" and config.attn_logit_softcap is not None:
        raise ValueError(
            "Attention: impl='cudnn' has no attention-logit soft-capping "
            f"(attn_logit_softcap={config.attn_logit_softcap}); use impl='xla'"
        )


class Attention(Projections, nnx.Module):
    PROJECTIONS = {"q": "BTD,DNH->BTNH", "k": "BTD,DKH->BTKH", "v": "BTD,DKH->BTKH", "o": "BTNH,NHD->BTD"}
    per_query_dots: bool = False  # the CPU decode-step form of the cached attention (_attend_cache)
    rope_lookup: nnx.Variable | None = None  # sin/cos by position (use_rope_table; apply_rope's table)

    def __init__(
        self,
        config: ModelConfig,
        layer_type: str,
        *,
        rngs: nnx.Rngs,
        dtype,
        chunk: int | None = None,
        impl: str = "xla",
    ):
        c = config
        check_impl(c, impl)
        self.chunk = chunk  # query-chunk size of the memory-linear attention path (None: always dense)
        self.impl = impl
        self.q = param(rngs, (c.embed_dim, c.num_heads, c.head_dim), (ax.EMBED, ax.HEADS, ax.HEAD_DIM), dtype)
        self.k = param(
            rngs, (c.embed_dim, c.num_kv_heads, c.head_dim), (ax.EMBED, ax.KV_HEADS, ax.HEAD_DIM), dtype
        )
        self.v = param(
            rngs, (c.embed_dim, c.num_kv_heads, c.head_dim), (ax.EMBED, ax.KV_HEADS, ax.HEAD_DIM), dtype
        )
        out_scale = (c.num_heads * c.head_dim) ** -0.5
        self.o = param(
            rngs,
            (c.num_heads, c.head_dim, c.embed_dim),
            (ax.HEADS, ax.HEAD_DIM, ax.EMBED),
            dtype,
            scale=out_scale,
        )
        if c.qk_norm:
            self.q_norm = RMSNorm(c.head_dim, eps=c.norm_eps, offset=c.norm_offset, dtype=dtype)
            self.k_norm = RMSNorm(c.head_dim, eps=c.norm_eps, offset=c.norm_offset, dtype=dtype)
        local = layer_type == "local"
        self.window = c.sliding_window if local else None
        self.rope_base = c.rope_base_local if local else c.rope_base_global
        self.rope_scale = c.rope_scale_local if local else c.rope_scale_global
        self.config = c

    def use_rope_table(self, n_positions: int) -> None:
        """Look the rotary sin/cos up in a table of positions 0 .. n_positions - 1 from now on.

        Every position this module then sees must be below n_positions (a gather clamps, it does not
        fail); Decoder.for_decoding sizes it as the cache is sized."""
        c = self.config
        self.rope_lookup = nnx.Variable(rope_table(n_positions, c.head_dim, self.rope_base, self.rope_scale))

    def __call__(self, x, positions, segment_ids, kv_cache=None, attn_mask=None):
        """x [B, T, D] -> ([B, T, D], (k, v) written to the cache or None).

        kv_cache: None (keys are the queries) or (k [B*K,S,H], v [B*K,H,S], cache positions [B,S],
        cache segment ids [B,S], write index) with this step's positions already written in.
        attn_mask: optional [B, T, T] bool, which keys each query may see (without a cache only). It
        replaces the causal-by-slot and segment rule, e.g. for prefix trees; the sliding window still
        applies by position.
        """
        c, dt = self.config, x.dtype
        q, k, v = self.project("q", x), self.project("k", x), self.project("v", x)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        table = None if self.rope_lookup is None else self.rope_lookup[...]
        q = apply_rope(q, positions, self.rope_base, self.rope_scale, table)
        k = apply_rope(k, positions, self.rope_base, self.rope_scale, table)

        T = x.shape[1]
        if attn_mask is not None and kv_cache is not None:
            raise ValueError("Attention: attn_mask is for cache-free passes only")
        if kv_cache is None:
            keys, values, k_pos, k_seg, q_slots = k, v, positions, segment_ids, jnp.arange(T)
            new_kv = None
        else:
            cache_k, cache_v, k_pos, k_seg, index = kv_cache  # [B*K, S, H], [B*K, H, S] (see Cache)
            k_new = jnp.einsum("BTKH->BKTH", k).reshape(-1, T, c.head_dim)  # [B*K, T, H]
            v_new = jnp.einsum("BTKH->BKHT", v).reshape(-1, c.head_dim, T)  # [B*K, H, T]
            keys = jax.lax.dynamic_update_slice(cache_k, k_new.astype(cache_k.dtype), (0, index, 0))
            values = jax.lax.dynamic_update_slice(cache_v, v_new.astype(cache_v.dtype), (0, 0, index))
            q_slots, new_kv = index + jnp.arange(T), (keys, values)
            keys, values = keys.astype(dt), values.astype(dt)

        B = x.shape[0]
        q = (q * jnp.asarray(c.query_scale, dt)).reshape(B, T, c.num_kv_heads, c.num_groups, c.head_dim)
        out = None
        if kv_cache is None and attn_mask is None and self.impl == "cudnn":
            try:
                # the window is the kernel's (by slot); causality and documents by the shared rule
                mask = attention_mask(q_slots, positions, segment_ids, k_pos, k_seg, window=None)
                out = self._cudnn(q, keys, values, mask)
            except NotImplementedError as e:  # a shape cuDNN's kernel does not take (odd T, head dim...)
                warnings.warn(
                    f"cuDNN attention cannot run this pass ({e}); XLA's attention runs it instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if out is None and kv_cache is None and self.chunk and T > self.chunk and T % self.chunk == 0:
            out = self._chunked(q, keys, values, positions, segment_ids, attn_mask)
        elif out is None:
            if attn_mask is None:
                mask = attention_mask(q_slots, positions, segment_ids, k_pos, k_seg, self.window)  # [B, T, S]
            else:
                mask = attn_mask & window_mask(positions, k_pos, self.window)
            attend = self._attend if kv_cache is None else self._attend_cache
            out = attend(q, keys, values, mask)
        out = out.reshape(B, T, c.num_heads, c.head_dim)
        return self.project("o", out), new_kv

    def _attend(self, q, keys, values, mask):
        """q [B,T,K,G,H], keys/values [B,S,K,H], mask [B,T,S] -> [B,T,K,G,H]."""
        logits = jnp.einsum("BTKGH,BSKH->BKGTS", q, keys)
        probs = self._probs(logits, mask).astype(q.dtype)
        return jnp.einsum("BKGTS,BSKH->BTKGH", probs, values)

    def _probs(self, logits, mask):
        """Logits [B,K,G,T,S], mask [B,T,S] -> soft-capped, masked softmax over S, in float32."""
        c = self.config
        logits = logits.astype(jnp.float32)
        if c.attn_logit_softcap is not None:
            logits = jnp.tanh(logits / c.attn_logit_softcap) * c.attn_logit_softcap
        logits = jnp.where(mask[:, None, None], logits, NEG_INF)
        # softmax in float32 for stability whatever the compute dtype.
        probs = jax.nn.softmax(logits, axis=-1)
        # A query that sees no key at all (padding) outputs 0, not a uniform average of whatever is there.
        return jnp.where(jnp.any(mask, axis=-1)[:, None, None, :, None], probs, 0)

    def _attend_cache(self, q, keys, values, mask):
        """_attend over the cache's layout: keys [Z,S,H], values [Z,H,S] (Z = B*K rows, Q = G*T queries).

        The dots are written in the forms XLA:CPU runs as library matmuls without copying the cache:
        keys times queries with H minor in both ([S,H] x [Q,H] -> [S,Q]; the barrier keeps the
        simplifier from folding the [S,Q] -> [Q,S] transpose into the dot, which made it an operand
        order the library rejects and a slow fallback dot), then values times probabilities with S minor
        in both ([H,S] x [Q,S] -> [H,Q]).

        With `per_query_dots` (Decoder.for_decoding sets it) and at most MAX_PER_QUERY_DOTS queries per
        row, each query instead takes its own batched matrix-vector products ([S,H] x [H] per row),
        which XLA:CPU runs with its own vectorised loops; the library's batched [S,H] x [H,Q] dot with
        Q = 4 is slow at it, while with per-query products the later queries find the KV cache still
        in the CPU's L3 (benchmarks/RESULTS.md, generation). Same numbers.
        """
        B, T, K, G, H = q.shape
        Q = G * T
        q_rows = jnp.einsum("BTKGH->BKGTH", q).reshape(B * K, Q, H)
        per_query = self.per_query_dots and Q <= MAX_PER_QUERY_DOTS
        if per_query:
            logits = jnp.stack([jnp.einsum("ZSH,ZH->ZS", keys, q_rows[:, i]) for i in range(Q)], axis=1)
        else:
            logits = jnp.einsum("ZSH,ZQH->ZSQ", keys, q_rows)
            logits = jnp.einsum("ZSQ->ZQS", jax.lax.optimization_barrier(logits))
        probs = self._probs(logits.reshape(B, K, G, T, -1), mask).astype(q.dtype).reshape(B * K, Q, -1)
        if per_query:
            out = jnp.stack([jnp.einsum("ZHS,ZS->ZH", values, probs[:, i]) for i in range(Q)], axis=-1)
        else:
            out = jnp.einsum("ZHS,ZQS->ZHQ", values, probs)  # [B*K, H, Q]
        return jnp.einsum("BKHGT->BTKGH", out.reshape(B, K, H, G, T))

    def _cudnn(self, q, keys, values, mask):
        """cuDNN's fused (flash) attention, GPU only: q [B,T,K,G,H] (already scaled), keys/values
        [B,T,K,H], mask [B,T,S] (attention_mask without the window) -> [B,T,K,G,H].

        Causal and sliding-window masking also happen inside the kernel, which skips fully masked key
        blocks and never writes the [T, S] probabilities; the mask brings in packed documents (cuDNN
        reads it as a bf16 bias: 2 bytes per query-key pair, against the XLA path's float32 logits and
        probabilities). One difference from the XLA path: a padding query (segment 0) that sees no key
        gets whatever cuDNN gives, not zeros (it feeds no real token).
        """
        B, T, K, G, H = q.shape
        if q.dtype not in (jnp.bfloat16, jnp.float16):
            raise ValueError(f"Attention: impl='cudnn' needs bfloat16 or float16 activations, got {q.dtype}")
        window = None if self.window is None else (self.window - 1, 0)  # q - k < window, by slot
        out = jax.nn.dot_product_attention(
            q.reshape(B, T, K * G, H),
            keys,
            values,
            mask=mask[:, None],
            scale=1.0,
            is_causal=True,
            local_window_size=window,
            implementation="cudnn",
        )
        return out.reshape(B, T, K, G, H)

    def _chunked(self, q, keys, values, positions, segment_ids, attn_mask=None):
        """Attention one query chunk [C] at a time, each chunk rematerialised in the backward pass.

        Peak memory is O(C * S) instead of O(T * S): no quadratic blow-up at long T. On sliding-window
        layers a chunk only sees keys in [chunk start - window, chunk end), so compute is linear in T too
        (not with an explicit attn_mask, whose [B, T, T] is itself quadratic).
        """
        B, T = q.shape[:2]
        C = self.chunk
        # keys a chunk can see; with an explicit mask (a prefix tree) a key's slot says nothing about
        # its position, so every slot stays in view and the window applies by position only
        span = T if self.window is None or attn_mask is not None else min(T, C + -(-self.window // C) * C)

        @jax.checkpoint
        def one(i):
            q_start = i * C
            k_start = jnp.clip(q_start + C - span, 0, T - span)
            sl = lambda x, start, size: jax.lax.dynamic_slice_in_dim(x, start, size, axis=1)  # noqa: E731
            if attn_mask is None:
                mask = attention_mask(
                    q_start + jnp.arange(C),
                    sl(positions, q_start, C),
                    sl(segment_ids, q_start, C),
                    sl(positions, k_start, span),
                    sl(segment_ids, k_start, span),
                    self.window,
                    k_slots=k_start + jnp.arange(span),
                )
            else:
                mask = jax.lax.dynamic_slice(attn_mask, (0, q_start, k_start), (B, C, span))
                mask &= window_mask(sl(positions, q_start, C), sl(positions, k_start, span), self.window)
            return self._attend(sl(q, q_start, C), sl(keys, k_start, span), sl(values, k_start, span), mask)

        out = jax.lax.map(one, jnp.arange(T // C))  # [T/C, B, C, K, G, H]
        return jnp.moveaxis(out, 0, 1).reshape(q.shape)
