"""The decoder: (tokens, positions, segment_ids, cache) -> Output(logits, hidden, cache)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from align.model import axes as ax
from align.model.attention import Attention, check_impl
from align.model.cache import Cache
from align.model.config import ModelConfig
from align.model.layers import MLP, Embedder, Projections, RMSNorm, cast_param, dense, param, softcap
from align.model.sharding import constrain


@flax.struct.dataclass
class Output:
    logits: jax.Array | None  # [B, T, V] float32
    hidden: jax.Array  # [B, T, D] final-normed
    cache: Cache | None


def _check_cache_fits(cache: Cache, T: int) -> None:
    """Raise if writing T slots at cache.index would run past the cache's S slots.

    dynamic_update_slice clamps the start instead of failing, which would silently overwrite earlier
    slots. T and S are static; the index is checked only when concrete (eager calls). Under jit it is
    traced, and the caller must size the cache, as the sampler does (P + M slots for P + M - 1 writes).
    """
    if T > cache.size:
        raise ValueError(f"cannot write {T} tokens into a cache of {cache.size} slots")
    if not isinstance(cache.index, jax.core.Tracer) and int(cache.index) + T > cache.size:
        raise ValueError(
            f"cache overflow: writing {T} tokens at slot {int(cache.index)} of a {cache.size}-slot cache"
        )


class Block(nnx.Module):
    """Pre-norm residual block; Gemma 2/3 also normalise each branch's output (post norms)."""

    def __init__(
        self, config: ModelConfig, layer_type: str, *, rngs: nnx.Rngs, dtype, attn_chunk=None, attn_impl="xla"
    ):
        c = config
        norm = lambda: RMSNorm(c.embed_dim, eps=c.norm_eps, offset=c.norm_offset, dtype=dtype)  # noqa: E731
        self.pre_attn_norm, self.pre_mlp_norm = norm(), norm()
        if c.post_norms:
            self.post_attn_norm, self.post_mlp_norm = norm(), norm()
        self.attn = Attention(c, layer_type, rngs=rngs, dtype=dtype, chunk=attn_chunk, impl=attn_impl)
        self.mlp = MLP(c.embed_dim, c.hidden_dim, activation=c.activation, rngs=rngs, dtype=dtype)
        self.post_norms = c.post_norms

    def __call__(self, x, positions, segment_ids, kv_cache=None, attn_mask=None):
        h, new_kv = self.attn(self.pre_attn_norm(x), positions, segment_ids, kv_cache, attn_mask)
        if self.post_norms:
            h = self.post_attn_norm(h)
        x = x + h
        h = self.mlp(self.pre_mlp_norm(x))
        if self.post_norms:
            h = self.post_mlp_norm(h)
        return x + h, new_kv


@jax.jit  # always compiled, so always fused: run op by op it would write [V, B, D] products (5 GB at B 8)
def _vocab_major_logits(table: jax.Array, hidden: jax.Array) -> jax.Array:
    """[V, D] x [B, D] -> [V, B]: the dot's operands, multiplied and summed over D in float32 (like the
    dot's accumulation); see Decoder.next_token_logits."""
    f32 = jnp.float32
    if hidden.shape[0] == 1:
        # one row: XLA:CPU runs this reduce ~60x slower than the matrix-vector dot (it drops the
        # size-1 axis and reduces [V, D] along D element by element), so one row takes the dot
        return jnp.einsum("VD,BD->VB", table, hidden, preferred_element_type=f32)
    return jnp.sum(table.astype(f32)[:, None, :] * hidden.astype(f32)[None], axis=-1)


class Decoder(nnx.Module):
    """Gemma-family decoder-only transformer.

    Args:
      config: the architecture.
      rngs: parameter initialisation keys.
      param_dtype: storage dtype of the weights.
      dtype: compute dtype of activations (bf16 for speed; logits and softmaxes stay float32).
      remat: recompute each block in the backward pass instead of storing its activations.
      attn_chunk: sequences longer than this (and a multiple of it) use query-chunked attention, whose
        memory grows linearly with length; None keeps the dense [T, S] attention everywhere.
      attn_impl: "xla" (einsums, any backend) or "cudnn" (cuDNN's fused flash attention for passes
        without a cache or an explicit attn_mask; GPU, bf16/fp16 activations, no logit soft-capping;
        attn_chunk is then unused there; a shape the kernel refuses runs XLA's, with a warning).
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        dtype=jnp.float32,
        remat: bool = False,
        attn_chunk: int | None = 1024,
        attn_impl: str = "xla",
    ):
        c = config
        self.config, self.dtype, self.remat = c, dtype, remat
        self.embedder = Embedder(
            c.vocab_size, c.embed_dim, scale_by_sqrt_dim=c.scale_embeddings, rngs=rngs, dtype=param_dtype
        )
        self.layers = nnx.List(
            [
                Block(c, t, rngs=rngs, dtype=param_dtype, attn_chunk=attn_chunk, attn_impl=attn_impl)
                for t in c.layer_types
            ]
        )
        self.final_norm = RMSNorm(c.embed_dim, eps=c.norm_eps, offset=c.norm_offset, dtype=param_dtype)
        if not c.tie_embeddings:
            self.lm_head = param(rngs, (c.embed_dim, c.vocab_size), (ax.EMBED, ax.VOCAB), param_dtype)

    weight_dtype: str | None = None  # set by store_weights (for_decoding's weight_dtype)

    def unembed_matrix(self) -> jax.Array:
        """[V, D]: the matrix the final hidden state is multiplied with to give logits."""
        return self.embedder.unembed_matrix() if self.config.tie_embeddings else self.lm_head[...].T

    def _unembed_operands(self, hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(table [V, D], hidden) in the dtype the unembedding multiplies them in: the activations' as
        trained, the table's storage dtype after store_weights (never a float32 copy of the table)."""
        table = self.unembed_matrix()
        if self.weight_dtype is None:
            return table.astype(hidden.dtype), hidden
        return table, hidden.astype(table.dtype)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[B, T, D] -> [B, T, V] float32, soft-capped when the config says so.

        The dot accumulates and emits float32 (as scoring.py's does): with bf16 compute, rounding the
        logits to bf16 first would cost ~3 significant digits in every log-prob.
        """
        table, hidden = self._unembed_operands(hidden)
        return self._softcap(dense("BTD,VD->BTV", hidden, table, preferred_element_type=jnp.float32))

    def next_token_logits(self, hidden: jax.Array, *, vocab_major: bool = False) -> jax.Array:
        """[B, D] final-normed hidden -> float32 logits [B, V], or [V, B] when vocab_major.

        vocab_major is the decode-step form for XLA:CPU: logits [V, B] as one fused multiply-and-sum
        over D, which streams the [V, D] table once with the few hidden rows in cache, and softmax/argmax
        then reduce over axis 0 instead of paying for a [V, B] -> [B, V] transpose. For the few rows of
        a decode step this beat both dot forms (`VD,BD->VB`, the form before, and `BD,VD->BV`) on the
        unembedding, most at small batches (benchmarks/RESULTS.md, generation).

        With weights stored in bfloat16 (store_weights) the vocab-major form is the dot `VD,BD->VB` of
        bf16 operands with float32 sums instead: XLA:CPU runs it as one library matmul reading the bf16
        table, where the multiply-and-sum would convert it element by element.
        """
        table, hidden = self._unembed_operands(hidden)
        if vocab_major and self.weight_dtype is None:
            return self._softcap(_vocab_major_logits(table, hidden))
        if vocab_major:
            return self._softcap(jnp.einsum("VD,BD->VB", table, hidden, preferred_element_type=jnp.float32))
        return self._softcap(dense("BD,VD->BV", hidden, table, preferred_element_type=jnp.float32))

    def _softcap(self, logits: jax.Array) -> jax.Array:
        return softcap(logits.astype(jnp.float32), self.config.final_logit_softcap)

    def use_attention(self, impl: str) -> None:
        """Switch every layer's cache-free attention to `impl` ("xla" or "cudnn"; see attn_impl), e.g.
        after loading a checkpoint. Raises ValueError for an impl that cannot run this config."""
        check_impl(self.config, impl)
        for _, module in nnx.iter_modules(self):
            if isinstance(module, Attention):
                module.impl = impl

    def store_weights(self, dtype) -> None:
        """Store the matmul weights (every projection and the unembedding table, the embedding table
        too when tied) in `dtype`, in place, and multiply them in it with float32 sums; norms, the
        activations between the dots, attention, the KV cache and the logits stay as they are. For the
        throwaway copy a decode loop runs on (for_decoding's weight_dtype), never for training."""
        for _, module in nnx.iter_modules(self):
            if isinstance(module, Projections):
                module.store_weights(dtype)
        if self.config.tie_embeddings:
            self.embedder.table = cast_param(self.embedder.table, dtype)
        else:
            self.lm_head = cast_param(self.lm_head, dtype)
        self.weight_dtype = jnp.dtype(dtype).name

    def for_decoding(
        self, n_positions: int | None = None, *, out_first: bool = False, weight_dtype=None
    ) -> Decoder:
        """A copy for CPU decode loops, whose cached attention takes one matrix-vector product per
        query (Attention.per_query_dots). Unless out_first, it shares every weight with the original;
        the original module is left as it is either way.

        n_positions: every position the copy will see is below it; its rotary sin/cos are then looked
        up in tables made here, before the loop (Attention.use_rope_table), not computed each step.
        out_first: also store every projection weight [*out, *in] (layers.Projections.to_out_first; one
        copy of the layer weights, not of the embedding table), so that each step's few-row matmuls
        take the weight as the dot's left operand (dense's weight_first). Whether that pays depends on
        the CPU: on some the layer weights stream much faster that way, on others the matmuls are as
        fast without it and the copy is a fixed cost per `generate` call (benchmarks/RESULTS.md), so
        the sampler leaves it off unless asked.
        weight_dtype: store the copy's matmul weights in this dtype (store_weights), e.g. bfloat16:
        half the bytes a decode step streams, made once before the loop (a cast of every weight).
        """
        graphdef, state = nnx.split(self)
        model = nnx.merge(graphdef, state)
        if weight_dtype is not None:
            model.store_weights(weight_dtype)
        for _, module in nnx.iter_modules(model):
            if out_first and isinstance(module, Projections):
                module.to_out_first()
            if isinstance(module, Attention):
                module.per_query_dots = True
                if n_positions is not None:
                    module.use_rope_table(n_positions)
        return model

    def __call__(
        self,
        tokens,
        positions,
        segment_ids,
        cache: Cache | None = None,
        *,
        return_logits: bool = True,
        attn_mask: jax.Array | None = None,
    ) -> Output:
        """tokens, positions, segment_ids: int32 [B, T]. With a cache, the step is written at cache.index.

        attn_mask: optional [B, T, T] bool in place of the causal + segment rule (no cache), e.g. a
        prefix tree: several continuations after one shared context in one row (see Attention).
        """
        x = constrain(self.embedder.encode(tokens, self.dtype), ax.RESIDUAL)  # [B, T, D]
        if cache is not None:
            _check_cache_fits(cache, tokens.shape[1])
            index = cache.index
            cache_pos = jax.lax.dynamic_update_slice(cache.positions, positions, (0, index))
            cache_seg = jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids, (0, index))
        new_k, new_v = [], []
        for i, block in enumerate(self.layers):
            kv = None if cache is None else (cache.k[i], cache.v[i], cache_pos, cache_seg, index)
            if self.remat and cache is None:
                x, _ = nnx.remat(lambda b, *a: b(*a))(block, x, positions, segment_ids, None, attn_mask)
            else:
                x, step_kv = block(x, positions, segment_ids, kv, attn_mask)
                if step_kv is not None:
                    new_k.append(step_kv[0])
                    new_v.append(step_kv[1])
            x = constrain(x, ax.RESIDUAL)
        hidden = constrain(self.final_norm(x), ax.RESIDUAL)  # the chunked losses tile it by rows
        new_cache = None
        if cache is not None:
            new_cache = Cache(
                k=tuple(new_k),
                v=tuple(new_v),
                positions=cache_pos,
                segment_ids=cache_seg,
                index=index + tokens.shape[1],
            )
        return Output(logits=self.logits(hidden) if return_logits else None, hidden=hidden, cache=new_cache)

    def layer_states(self, tokens, positions, segment_ids, layers: Sequence[int]) -> list[jax.Array]:
        """The residual stream [B, T, D] after each block l of `layers` (1-based; 0: the embedding
        output), the last block's read after the final norm as `hidden` gives it; in `layers`' order.
        For frozen-feature probes (reward-model probe, judges); blocks past max(layers) are not run."""
        n_layers, wanted = len(self.layers), set(layers)
        x = constrain(self.embedder.encode(tokens, self.dtype), ax.RESIDUAL)  # [B, T, D]
        taken = {0: x} if 0 in wanted else {}
        for i, block in enumerate(self.layers, start=1):
            if i > max(wanted):
                break
            x, _ = block(x, positions, segment_ids, None, None)
            x = constrain(x, ax.RESIDUAL)
            if i in wanted:
                taken[i] = self.final_norm(x) if i == n_layers else x
        return [taken[layer] for layer in layers]

    def hidden(self, tokens, positions, segment_ids, *, attn_mask: jax.Array | None = None) -> jax.Array:
        """Final-normed hidden states [B, T, D] without the (large) logits: for chunked losses and heads."""
        return self(tokens, positions, segment_ids, return_logits=False, attn_mask=attn_mask).hidden
