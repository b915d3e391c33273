"""Weighted distillation divergence whose gradient is formed in the forward pass: 4 unembedding matmuls
per tile under `jax.grad`, not 6.

`chunked_token_divergence` (one vocabulary slice) rematerialises each tile, so under `jax.grad` a tile
costs the student's and the teacher's [C, V] logits in the forward pass, both again in the backward
pass, then dz @ E_s and dz^T @ h_s. A token-mean loss is linear in the per-token divergences with
weights known up front (w = loss_mask / n_tokens), so every token's cotangent is known in the forward
pass up to one scalar, and the tile's gradient is taken right after its logits, as `fused_nll` does
for the NLL.

Per token, with a = z_s / tau the student's tempered logits (z = softcap(x), x = h . E^T),
q = softmax(a), p = softmax(z_t / tau) and J the divergence of `align.training.distill`:

    beta = 0       J = KL(p || q)                  dJ/da = q - p
    beta = 1       J = KL(q || p)                  dJ/da = q * (g - sum_v q_v g_v),  g = log q - log p
    0 < beta < 1   J = JSD_beta, m = beta p + (1 - beta) q
                   dJ/dq_v = (1 - beta) log(q_v / m_v)   (the terms in dm/dq cancel against the +1's)
                                                   dJ/da = q * (g - sum_v q_v g_v),  g = (1 - beta) log(q / m)

(for beta = 1 the +1 of d(q log q)/dq drops out of the softmax's Jacobian, as any constant does).
Then dz = w * dJ/da / tau, times dz/dx = 1 - (z / cap)^2 when the student's logits are capped, and

    dloss/dh_s = dz @ E_s              [N, D_s]   (kept: 4 bytes * N * D_s)
    dloss/dE_s = sum_tiles dz^T @ h_s  [V, D_s]   (kept: one float32 table from forward to backward)

The backward pass only scales the two by the incoming scalar. The teacher's inputs get no gradient
(a frozen teacher). Memory: one [V, D_s] float32 table lives from the loss forward to the end of the
backward pass, against the [C, V] tiles both forms hold. Use `chunked_token_divergence` for per-token
values (evaluation, metrics), for vocabulary slices (`vocab_chunk`), or when the weights depend on
the parameters.

Shapes: B batch, T time, D model dim, V vocab, C tokens per tile, N = B*T flattened tokens.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from align.model.layers import softcap
from align.training.distill import _check_beta, _flat_tiles, check_pair_shapes, chunked_token_divergence
from align.training.fused_nll import _kept_on_cpu, scan_tiles
from align.training.logprobs import tile_logits


class _Static(NamedTuple):
    """The hashable, non-differentiated arguments of the fused loss."""

    beta: float
    temperature: float
    chunk_size: int
    student_softcap: float | None
    teacher_softcap: float | None


def _log_softmax_and_softmax(a):
    """(log softmax(a), softmax(a)) of [C, V] float32 logits from one exp pass (barrier: fused_nll)."""
    a_max = jnp.max(a, axis=-1, keepdims=True)
    e = _kept_on_cpu(jnp.exp(a - a_max))
    total = jnp.sum(e, axis=-1, keepdims=True)
    return a - a_max - jnp.log(total), e / total


def _divergence_and_grad(log_p, p, log_q, q, beta):
    """(J [C], dJ/da [C, V]) per token; teacher (log p, p), student (log q, q), a the student's tempered
    logits."""
    if beta == 0.0:
        return jnp.sum(p * (log_p - log_q), axis=-1), q - p
    if beta == 1.0:
        g = log_q - log_p
        rest = 0.0
    else:
        # log m directly, floored: where m underflows so do p and q, whose terms are then ~0 either way.
        # One log per element against logaddexp's exp and log1p, and no less accurate: the float32
        # error of the gradient is the cancellation in g - sum_v q_v g_v, the same in both forms.
        log_m = jnp.log(jnp.maximum(beta * p + (1.0 - beta) * q, jnp.finfo(jnp.float32).tiny))
        g = (1.0 - beta) * (log_q - log_m)
        rest = beta * jnp.sum(p * (log_p - log_m), axis=-1)
    qg = jnp.sum(q * g, axis=-1)  # (1 - beta) KL(q || m); KL(q || p) at beta = 1
    return rest + qg, q * (g - qg[:, None])


def _tile(h_s, h_t, w, e_s, e_t, static: _Static):
    """One tile: (sum_c w_c J_c, dloss/dh_s [C, D_s], dloss/dx [C, V] in h_s's dtype); the tables are
    already in their hidden states' dtypes (matmuls in the compute dtype, accumulated in float32)."""
    inv_tau = 1.0 / static.temperature
    x = tile_logits(h_s, e_s)  # [C, V]
    cap = static.student_softcap
    capped = None if cap is None else jnp.tanh(x / cap)
    z_s = x if cap is None else cap * capped
    log_q, q = _log_softmax_and_softmax(z_s * inv_tau)
    log_p, p = _log_softmax_and_softmax(softcap(tile_logits(h_t, e_t), static.teacher_softcap) * inv_tau)
    div, grad = _divergence_and_grad(log_p, p, log_q, q, static.beta)
    dz = grad * (w * inv_tau)[:, None]
    if cap is not None:
        dz = dz * (1.0 - capped * capped)  # d(cap * tanh(x / cap)) / dx
    dz = dz.astype(h_s.dtype)
    dh = jnp.einsum("CV,VD->CD", dz, e_s, preferred_element_type=jnp.float32)
    return jnp.sum(w * div), dh, dz


def _forward(h_s, e_s, h_t, e_t, weights, static: _Static):
    B, T, D = h_s.shape
    n = B * T
    n_tiles = -(-n // static.chunk_size)
    # Padded tokens get weight 0: they add nothing to the loss or to either gradient.
    xs = (
        _flat_tiles(h_s.reshape(n, D), n_tiles, static.chunk_size),
        _flat_tiles(h_t.reshape(n, -1), n_tiles, static.chunk_size),
        _flat_tiles(weights.reshape(n).astype(jnp.float32), n_tiles, static.chunk_size),
    )
    # Cast once, not in every tile (inside the scan body the cast runs per tile: fused_nll).
    e_s_c, e_t_c = e_s.astype(h_s.dtype), e_t.astype(h_t.dtype)
    return scan_tiles(lambda hs, ht, w: _tile(hs, ht, w, e_s_c, e_t_c, static), xs, h_s, e_s)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _fused(h_s, e_s, h_t, e_t, weights, static: _Static):
    # Not differentiated (evaluation): the plain chunked divergences, one logits matmul per model.
    div = chunked_token_divergence(
        h_s,
        e_s,
        h_t,
        e_t,
        beta=static.beta,
        temperature=static.temperature,
        chunk_size=static.chunk_size,
        student_softcap=static.student_softcap,
        teacher_softcap=static.teacher_softcap,
    )
    return jnp.sum(weights.astype(jnp.float32) * div)


def _fused_fwd(h_s, e_s, h_t, e_t, weights, static):
    return _forward(h_s, e_s, h_t, e_t, weights, static)


def _fused_bwd(static, grads, g):
    d_hidden, d_unembed = grads
    # The teacher is frozen and the weights are constants by contract: no cotangent for them.
    return g.astype(d_hidden.dtype) * d_hidden, g.astype(d_unembed.dtype) * d_unembed, None, None, None


_fused.defvjp(_fused_fwd, _fused_bwd)


def chunked_weighted_divergence(
    student_hidden: jax.Array,
    student_unembed: jax.Array,
    teacher_hidden: jax.Array,
    teacher_unembed: jax.Array,
    weights: jax.Array,
    *,
    beta: float = 0.0,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    student_softcap: float | None = None,
    teacher_softcap: float | None = None,
) -> jax.Array:
    """sum_{b,t} weights[b,t] * chunked_token_divergence(...)[b,t], its gradient formed in the forward pass.

    Equal in value and in its gradient to the student's inputs to the weighted sum of
    `chunked_token_divergence` (one vocabulary slice), with two unembedding matmuls per tile fewer
    under `jax.grad` (module docstring).

    Args:
      student_hidden, teacher_hidden: [B, T, D_s], [B, T, D_t] final-normed hidden states.
      student_unembed, teacher_unembed: [V, D_s], [V, D_t].
      weights: [B, T] per-token weights, e.g. loss_mask / n_tokens for a token mean. No gradient flows
        into them, nor into the teacher's inputs.
      beta, temperature, chunk_size, student_softcap, teacher_softcap: as `chunked_token_divergence`.

    Returns:
      scalar float32 loss.
    """
    _check_beta(beta)
    if chunk_size < 1 or temperature <= 0:
        raise ValueError(f"chunk_size must be >= 1 and temperature > 0, got {chunk_size} and {temperature}")
    check_pair_shapes(student_hidden, student_unembed, teacher_hidden, teacher_unembed, weights)
    static = _Static(float(beta), float(temperature), int(chunk_size), student_softcap, teacher_softcap)
    teacher = jax.lax.stop_gradient((teacher_hidden, teacher_unembed))
    return _fused(student_hidden, student_unembed, *teacher, jax.lax.stop_gradient(weights), static)
