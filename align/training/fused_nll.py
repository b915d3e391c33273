"""Weighted next-token NLL whose gradient is formed in the forward pass: 3 unembedding matmuls, not 4.

`chunked_token_logprobs` under `jax.grad` costs four [C, D] x [D, V] matmuls per tile: the logits in
the forward pass, the same logits again in the backward pass (the tile is rematerialised so that
the [N, V] logits are never stored), then dz @ E and dz^T @ h. When the loss is *linear* in the
per-token log-probabilities with weights known up front (SFT's token-mean NLL), the cotangent of
every token is known in the forward pass up to one scalar, so the tile's gradient can be taken
right after its logits:

    loss      = sum_n w_n * -log softmax(z_n)[t_n],        z_n = softcap(h_n . E^T)
    dloss/dz  = w_n * (softmax(z_n) - onehot(t_n))          (times softcap' when capped)
    dloss/dh  = dz @ E                [N, D]   (kept: 4 bytes * N * D)
    dloss/dE  = sum_tiles dz^T @ h    [V, D]   (kept: one extra table from forward to backward)

The backward pass only scales those two by the incoming scalar. Memory: one [V, D] float32 table
lives from the loss forward to the end of the backward pass (671 MB for gemma3-270m), against a
[C, V] tile in both versions. Use `chunked_token_logprobs` where the loss is not linear in log p
(DPO, PPO), or when `weights` depend on the parameters.

Shapes: B batch, T time, D model dim, V vocab, C tokens per chunk, N = B*T flattened tokens.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from align.training.logprobs import chunked_token_logprobs


def _kept_on_cpu(e):
    """`e` behind an optimization barrier on CPU only, so one exp pass feeds both the sum and dz.

    On XLA:CPU the exp fused into YNNPACK's softmax-sum reduction ran several times slower per
    element than the same exp in a loop fusion (benchmarks/RESULTS.md, train step).
    Elsewhere the barrier would cost one extra write and read of each [C, V] tile, and the GPU
    figures were measured without it, so other backends keep XLA's own fusion.
    """
    return jax.lax.platform_dependent(e, cpu=jax.lax.optimization_barrier, default=lambda x: x)


def _scaled_minus_onehot(e, scale, t, w):
    """e * scale[:, None] - w[:, None] * onehot(t): [C, V] float32.

    Off CPU the one-hot is an iota compare inside the elementwise pass, so the cast to the compute
    dtype that follows fuses into it too; a scatter of -w into the float32 tile kept that cast out of
    the fusion, one more [C, V] float32 write and read, a visible share of a GPU step
    (benchmarks/RESULTS.md). On XLA:CPU the scatter form is kept: the compare made each tile slower.
    """
    return jax.lax.platform_dependent(e, scale, t, w, cpu=_minus_onehot_scatter, default=_minus_onehot_select)


def _minus_onehot_select(e, scale, t, w):
    return e * scale[:, None] - jnp.where(jnp.arange(e.shape[-1])[None, :] == t[:, None], w[:, None], 0.0)


def _minus_onehot_scatter(e, scale, t, w):
    return (e * scale[:, None]).at[jnp.arange(e.shape[0]), t].add(-w)  # in place


def _tile(h, t, w, unembed, final_softcap):
    """One tile: (sum_c -w_c log p_c, dloss/dh [C, D], dloss/dz [C, V] in h's dtype); `unembed` is
    already in h's dtype (matmuls in the compute dtype, accumulated in float32)."""
    z = jnp.einsum("CD,VD->CV", h, unembed, preferred_element_type=jnp.float32)  # [C, V]
    if final_softcap is not None:
        capped = jnp.tanh(z / final_softcap)
        z = final_softcap * capped
    z_max = jnp.max(z, axis=-1)  # [C]
    e = _kept_on_cpu(jnp.exp(z - z_max[:, None]))  # [C, V]
    total = jnp.sum(e, axis=-1)  # [C]
    rows = jnp.arange(h.shape[0])
    lp = z[rows, t] - z_max - jnp.log(total)
    dz = _scaled_minus_onehot(e, w / total, t, w)  # w * (softmax - onehot(t))
    if final_softcap is not None:
        dz = dz * (1.0 - capped * capped)  # d(cap * tanh(x / cap)) / dx
    dz = dz.astype(h.dtype)
    dh = jnp.einsum("CV,VD->CD", dz, unembed, preferred_element_type=jnp.float32)
    return -jnp.sum(w * lp), dh, dz


def _forward(hidden, unembed, targets, weights, chunk_size, final_softcap):
    B, T, D = hidden.shape
    n = B * T
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    # Padded tokens get weight 0: they add nothing to the loss or to either gradient.
    xs = (
        jnp.pad(hidden.reshape(n, D), ((0, pad), (0, 0))).reshape(n_chunks, chunk_size, D),
        jnp.pad(targets.reshape(n).astype(jnp.int32), (0, pad)).reshape(n_chunks, chunk_size),
        jnp.pad(weights.reshape(n).astype(jnp.float32), (0, pad)).reshape(n_chunks, chunk_size),
    )

    # Cast once, not in every tile: inside the scan body it runs per tile (seen in a GPU profile: one
    # convert kernel per tile, each a full [V, D] float32 -> bf16 pass; benchmarks/RESULTS.md).
    unembed_c = unembed.astype(hidden.dtype)
    return scan_tiles(lambda h, t, w: _tile(h, t, w, unembed_c, final_softcap), xs, hidden, unembed)


def scan_tiles(tile, xs, hidden, unembed):
    """Sum `tile(*x) -> (loss, dh [C, D], dz [C, V])` over the tiles `xs` (xs[0]: the hidden tiles
    [n_tiles, C, D] of `hidden` [B, T, D], padded) and dz^T @ h into the table's gradient:
    (loss, (dloss/dhidden [B, T, D], dloss/dunembed [V, D])). The fused losses' shared loop."""
    B, T, D = hidden.shape

    def body(carry, x):
        loss, d_unembed = carry
        tile_loss, dh, dz = tile(*x)
        d_unembed = d_unembed + jnp.einsum("CV,CD->VD", dz, x[0], preferred_element_type=jnp.float32)
        return (loss + tile_loss, d_unembed), dh

    init = (jnp.zeros((), jnp.float32), jnp.zeros(unembed.shape, jnp.float32))
    (loss, d_unembed), dh = jax.lax.scan(body, init, xs)
    d_hidden = dh.reshape(-1, D)[: B * T].reshape(B, T, D)
    return loss, (d_hidden.astype(hidden.dtype), d_unembed.astype(unembed.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _fused(hidden, unembed, targets, weights, chunk_size, final_softcap):
    # Not differentiated (evaluation): the plain chunked log-probs, one matmul per tile.
    lp = chunked_token_logprobs(hidden, unembed, targets, chunk_size=chunk_size, final_softcap=final_softcap)
    return -jnp.sum(weights.astype(jnp.float32) * lp)


def _fused_fwd(hidden, unembed, targets, weights, chunk_size, final_softcap):
    return _forward(hidden, unembed, targets, weights, chunk_size, final_softcap)


def _fused_bwd(chunk_size, final_softcap, grads, g):
    d_hidden, d_unembed = grads
    # targets are integers and weights are treated as constants: no cotangent for either.
    return g.astype(d_hidden.dtype) * d_hidden, g.astype(d_unembed.dtype) * d_unembed, None, None


_fused.defvjp(_fused_fwd, _fused_bwd)


def chunked_weighted_nll(
    hidden: jax.Array,
    unembed: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    *,
    chunk_size: int,
    final_softcap: float | None = None,
) -> jax.Array:
    """sum_{b,t} weights[b,t] * -log softmax(softcap(hidden[b,t] @ unembed.T))[targets[b,t]].

    Equal in value and gradient to `-(weights * chunked_token_logprobs(...)).sum()`, with one
    unembedding matmul per tile fewer under `jax.grad` (see the module docstring for the cost).

    Args:
      hidden: [B, T, D] final-normed hidden states.
      unembed: [V, D] output embedding.
      targets: [B, T] int ids in [0, V).
      weights: [B, T] per-token weights, e.g. loss_mask / n_tokens for a token mean. No gradient
        flows into them.
      chunk_size: tokens per logits tile C (>= 1).
      final_softcap: Gemma 2's final logit soft-capping, None for none.

    Returns:
      scalar float32 loss.
    """
    if chunk_size < 1:
        raise ValueError(f"chunked_weighted_nll: chunk_size must be >= 1, got {chunk_size}")
    B, T, D = hidden.shape
    if targets.shape != (B, T) or weights.shape != (B, T) or unembed.shape[-1] != D:
        raise ValueError(
            f"chunked_weighted_nll: hidden {hidden.shape}, unembed {unembed.shape}, targets {targets.shape} "
            f"and weights {weights.shape} do not fit [B, T, D], [V, D], [B, T], [B, T]"
        )
    return _fused(hidden, unembed, targets, jax.lax.stop_gradient(weights), chunk_size, final_softcap)
