"""Distillation losses: per-token divergences between a teacher's and a student's next-token
distributions, computed without ever forming either model's [B, T, V] logits.

Per token, with p = softmax(z_t / tau) the teacher's and q = softmax(z_s / tau) the student's
distribution over the vocabulary (z = softcap(h @ E^T), each model with its own cap):

    beta = 0        KL(p || q) = sum_v p_v (log p_v - log q_v)          forward KL (Hinton et al. 2015;
                                                                          Gemma 2, Gemma Team 2024, sec. 3)
    beta = 1        KL(q || p) = sum_v q_v (log q_v - log p_v)          reverse KL (MiniLLM, Gu et al. 2024)
    0 < beta < 1    JSD_beta   = beta KL(p || m) + (1 - beta) KL(q || m),  m = beta p + (1 - beta) q
                                                                          (GKD, Agarwal et al. 2024, eq. 1)

as TRL's `GKDTrainer.generalized_jsd_loss` defines them (its ends are special-cased to the two KLs: the
limit of JSD_beta itself is 0 at both ends). No tau^2 factor is applied (TRL applies none either).

Chunking. The B*T tokens are cut into tiles of C tokens (a `lax.scan`, as `chunked_token_logprobs`);
with `vocab_chunk` the vocabulary is cut too, into U-row slices of the unembedding, so one tile's
logits are [C, U]. A divergence needs each distribution's normaliser lse = log sum_v exp(z_v) over the
whole vocabulary, accumulated online (the streaming log-sum-exp of online softmax, Milakov and
Gimelshein 2018): with a running max m and sum s = sum_v exp(z_v - m), a new slice with max m' gives

    m' = max(m, max_u z_u),    s' = s exp(m - m') + sum_u exp(z_u - m'),    lse = m + log s

The forward KL needs nothing more, since

    KL(p || q) = sum_v p_v (z_t,v - z_s,v) - lse_t + lse_s,    sum_v p_v (z_t,v - z_s,v) = w / s_t,
    w' = w exp(m_t - m_t') + sum_u exp(z_t,u - m_t') (z_t,u - z_s,u)

so it takes one pass over the slices. Reverse KL and JSD need log p_v and log q_v elementwise (the
mixture's log is not linear in them): a first pass finds both normalisers, a second sums the terms.
Both scan bodies are rematerialised (`jax.checkpoint`), so the backward pass stores only the [C]
carries of each slice and recomputes its [C, U] logits: peak logits memory is a few C x U float32
tiles in both passes, against B x T x V for the plain form. Without `vocab_chunk` (one slice) a tile
takes both [C, V] logits at once and needs neither pass: one logits matmul per model, not two. A
weighted sum of the divergences (a training loss's token mean) over the whole vocabulary is cheaper
still under `jax.grad` as `fused_divergence.chunked_weighted_divergence`, its gradient formed in the
forward pass (no logits recomputed in the backward pass).

Sparse targets (`sparse_topk_kl`): the teacher's top-K log-probabilities stored with the data, for a
teacher too large to run beside the student. The teacher is renormalised on its top-K support
(p~ = softmax_k(log p_k / tau)) and the student is normalised over the whole vocabulary:

    KL_sparse = sum_k p~_k (log p~_k - log q(id_k)) >= 0,   zero iff q puts p~ on the K ids.

Shapes: B batch, T time, D model dim, V vocab, K top-k, C tokens per tile, U vocab rows per slice.
All softmax arithmetic runs in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from align.model.layers import softcap
from align.training.logprobs import tile_logits

# ---- the unchunked reference (and the elementwise terms the chunked form shares) ----------------


def _divergence_terms(log_p: jax.Array, log_q: jax.Array, beta: float) -> jax.Array:
    """Elementwise summands over v of the divergence (teacher log_p, student log_q, both normalised)."""
    if beta == 0.0:
        return jnp.exp(log_p) * (log_p - log_q)
    if beta == 1.0:
        return jnp.exp(log_q) * (log_q - log_p)
    # log m = log(beta p + (1 - beta) q), formed in log space so that small p, q do not underflow.
    log_m = jnp.logaddexp(log_p + jnp.log(beta), log_q + jnp.log1p(-beta))
    return beta * jnp.exp(log_p) * (log_p - log_m) + (1.0 - beta) * jnp.exp(log_q) * (log_q - log_m)


def token_divergence(
    student_logits: jax.Array, teacher_logits: jax.Array, *, beta: float = 0.0, temperature: float = 1.0
) -> jax.Array:
    """The per-token divergence of the module docstring on whole logits: [B, T, V] x 2 -> [B, T].

    The reference the chunked forms are tested against; use it only where [B, T, V] fits.
    """
    _check_beta(beta)
    log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    return jnp.sum(_divergence_terms(log_p, log_q, beta), axis=-1)


def check_pair_shapes(student_hidden, student_unembed, teacher_hidden, teacher_unembed, weights=None):
    """(B, T) of the student's hidden states; ValueError unless the teacher's (and the weights) share
    [B, T] and the two tables share V."""
    B, T, _ = student_hidden.shape
    if (
        teacher_hidden.shape[:2] != (B, T)
        or student_unembed.shape[0] != teacher_unembed.shape[0]
        or (weights is not None and weights.shape != (B, T))
    ):
        extra = "" if weights is None else f", weights {weights.shape}"
        raise ValueError(
            f"student hidden {student_hidden.shape} / unembed {student_unembed.shape} and teacher hidden "
            f"{teacher_hidden.shape} / unembed {teacher_unembed.shape}{extra} do not share [B, T] and V"
        )
    return B, T


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1] (0: forward KL, 1: reverse KL), got {beta}")


# ---- chunked over tokens and vocabulary ----------------------------------------------------------


def _flat_tiles(x: jax.Array, n_tiles: int, size: int) -> jax.Array:
    """[N, ...] -> [n_tiles, size, ...], zero-padded at the end."""
    pad = n_tiles * size - x.shape[0]
    return jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)).reshape((n_tiles, size) + x.shape[1:])


def _vocab_slices(unembed: jax.Array, vocab_chunk: int | None) -> tuple[jax.Array, jax.Array]:
    """([n, U, D] slices of the unembedding, [n, U] bool: the row is a real vocabulary entry)."""
    V = unembed.shape[0]
    U = V if vocab_chunk is None else min(vocab_chunk, V)
    n = -(-V // U)
    valid = (jnp.arange(n * U) < V).reshape(n, U)
    return _flat_tiles(unembed, n, U), valid


def _slice_logits(h, e, cap, temperature):
    """One model's [C, U] logits on a vocabulary slice, float32, capped then tempered."""
    return softcap(tile_logits(h, e.astype(h.dtype)), cap) / temperature


def _online_pass(h_s, h_t, slices, caps, temperature):
    """Pass 1 over the vocabulary slices: (lse_t, lse_s, forward KL) per token, each [C]."""
    e_s, e_t, valid = slices
    C = h_s.shape[0]

    @jax.checkpoint
    def body(carry, xs):
        m_t, s_t, w, m_s, s_s = carry
        es, et, ok = xs
        z_s = jnp.where(ok, _slice_logits(h_s, es, caps[0], temperature), -jnp.inf)  # [C, U]
        z_t = jnp.where(ok, _slice_logits(h_t, et, caps[1], temperature), -jnp.inf)
        # The running max only keeps exp() in range; the result does not depend on it, so no
        # gradient flows through it (as in jax.nn.logsumexp).
        m_t2 = jax.lax.stop_gradient(jnp.maximum(m_t, jnp.max(z_t, axis=-1)))
        m_s2 = jax.lax.stop_gradient(jnp.maximum(m_s, jnp.max(z_s, axis=-1)))
        a_t, a_s = jnp.exp(m_t - m_t2), jnp.exp(m_s - m_s2)
        e_tz = jnp.exp(z_t - m_t2[:, None])  # [C, U]; 0 on padded rows
        diff = jnp.where(ok, z_t - z_s, 0.0)  # padded rows: -inf - -inf would be NaN
        w2 = w * a_t + jnp.sum(e_tz * diff, axis=-1)
        s_t2 = s_t * a_t + jnp.sum(e_tz, axis=-1)
        s_s2 = s_s * a_s + jnp.sum(jnp.exp(z_s - m_s2[:, None]), axis=-1)
        return (m_t2, s_t2, w2, m_s2, s_s2), None

    neg_inf, zero = jnp.full((C,), -jnp.inf), jnp.zeros((C,))
    (m_t, s_t, w, m_s, s_s), _ = jax.lax.scan(body, (neg_inf, zero, zero, neg_inf, zero), (e_s, e_t, valid))
    lse_t, lse_s = m_t + jnp.log(s_t), m_s + jnp.log(s_s)
    return lse_t, lse_s, w / s_t - lse_t + lse_s


def _terms_pass(h_s, h_t, slices, caps, temperature, lse_t, lse_s, beta):
    """Pass 2: sum over the slices of the divergence's elementwise terms, given both normalisers."""
    e_s, e_t, valid = slices

    @jax.checkpoint
    def body(total, xs):
        es, et, ok = xs
        log_q = _slice_logits(h_s, es, caps[0], temperature) - lse_s[:, None]  # [C, U]
        log_p = _slice_logits(h_t, et, caps[1], temperature) - lse_t[:, None]
        return total + jnp.sum(jnp.where(ok, _divergence_terms(log_p, log_q, beta), 0.0), axis=-1), None

    total, _ = jax.lax.scan(body, jnp.zeros(h_s.shape[:1]), (e_s, e_t, valid))
    return total


def chunked_token_divergence(
    student_hidden: jax.Array,
    student_unembed: jax.Array,
    teacher_hidden: jax.Array,
    teacher_unembed: jax.Array,
    *,
    beta: float = 0.0,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    vocab_chunk: int | None = None,
    student_softcap: float | None = None,
    teacher_softcap: float | None = None,
) -> jax.Array:
    """`token_divergence(softcap(h_s @ E_s^T), softcap(h_t @ E_t^T))` tile by tile: [B, T].

    Args:
      student_hidden, teacher_hidden: [B, T, D_s], [B, T, D_t] final-normed hidden states (the two
        models may differ in width; they share the vocabulary).
      student_unembed, teacher_unembed: [V, D_s], [V, D_t].
      beta: 0 forward KL(teacher || student), 1 reverse KL, in between the generalized JSD.
      temperature: both distributions are softmax(z / temperature).
      chunk_size: tokens per tile C.
      vocab_chunk: vocabulary rows per slice U (None: the whole vocabulary in one slice).
      student_softcap, teacher_softcap: each model's final logit soft-cap (None: none).

    Returns:
      [B, T] float32 divergences (mask and average them in the caller).
    """
    _check_beta(beta)
    if chunk_size < 1 or (vocab_chunk is not None and vocab_chunk < 1):
        raise ValueError(f"chunk_size and vocab_chunk must be >= 1, got {chunk_size} and {vocab_chunk}")
    B, T = check_pair_shapes(student_hidden, student_unembed, teacher_hidden, teacher_unembed)
    n = B * T
    n_tiles = -(-n // chunk_size)
    xs = (
        _flat_tiles(student_hidden.reshape(n, -1), n_tiles, chunk_size),
        _flat_tiles(teacher_hidden.reshape(n, -1), n_tiles, chunk_size),
    )
    e_s, valid = _vocab_slices(student_unembed, vocab_chunk)
    e_t, _ = _vocab_slices(teacher_unembed, vocab_chunk)
    slices, caps = (e_s, e_t, valid), (student_softcap, teacher_softcap)

    if e_s.shape[0] == 1:
        # One slice: both [C, V] tiles in hand, no streaming needed; the tile is rematerialised whole.
        @jax.checkpoint
        def tile(_, x):
            h_s, h_t = x  # [C, D_s], [C, D_t]
            log_q = jax.nn.log_softmax(_slice_logits(h_s, e_s[0], caps[0], temperature), axis=-1)
            log_p = jax.nn.log_softmax(_slice_logits(h_t, e_t[0], caps[1], temperature), axis=-1)
            return None, jnp.sum(_divergence_terms(log_p, log_q, beta), axis=-1)

    else:
        # Not rematerialised as a whole: the slice bodies already are, and a second level would
        # recompute every slice's logits once more in the backward pass.
        def tile(_, x):
            h_s, h_t = x
            lse_t, lse_s, fkl = _online_pass(h_s, h_t, slices, caps, temperature)
            if beta == 0.0:
                return None, fkl
            return None, _terms_pass(h_s, h_t, slices, caps, temperature, lse_t, lse_s, beta)

    _, div = jax.lax.scan(tile, None, xs)  # [n_tiles, C]
    return div.reshape(-1)[:n].reshape(B, T)


# ---- sparse teacher targets ----------------------------------------------------------------------


def _lse_pass(h, slices, cap, temperature):
    """Streaming log-sum-exp of one model's tempered logits over the vocabulary slices: [C]."""
    e, valid = slices

    @jax.checkpoint
    def body(carry, xs):
        m, s = carry
        es, ok = xs
        z = jnp.where(ok, _slice_logits(h, es, cap, temperature), -jnp.inf)  # [C, U]
        m2 = jax.lax.stop_gradient(jnp.maximum(m, jnp.max(z, axis=-1)))
        return (m2, s * jnp.exp(m - m2) + jnp.sum(jnp.exp(z - m2[:, None]), axis=-1)), None

    C = h.shape[0]
    (m, s), _ = jax.lax.scan(body, (jnp.full((C,), -jnp.inf), jnp.zeros((C,))), (e, valid))
    return m + jnp.log(s)


def sparse_topk_kl(
    student_hidden: jax.Array,
    student_unembed: jax.Array,
    topk_ids: jax.Array,
    topk_logps: jax.Array,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    vocab_chunk: int | None = None,
    student_softcap: float | None = None,
) -> jax.Array:
    """KL from the teacher's stored top-K distribution to the student (module docstring): [B, T].

    Args:
      student_hidden: [B, T, D]; student_unembed: [V, D].
      topk_ids: [B, T, K] int vocabulary ids of the teacher's K most likely tokens.
      topk_logps: [B, T, K] the teacher's log-probabilities of those ids (temperature 1).
    """
    B, T, D = student_hidden.shape
    K = topk_ids.shape[-1]
    if topk_ids.shape != (B, T, K) or topk_logps.shape != (B, T, K):
        raise ValueError(f"topk_ids {topk_ids.shape} and topk_logps {topk_logps.shape} are not [B, T, K]")
    n = B * T
    n_tiles = -(-n // chunk_size)
    xs = tuple(
        _flat_tiles(a.reshape(n, *a.shape[2:]), n_tiles, chunk_size)
        for a in (student_hidden, topk_ids.astype(jnp.int32), topk_logps.astype(jnp.float32))
    )
    slices = _vocab_slices(student_unembed, vocab_chunk)

    @jax.checkpoint
    def tile(_, x):
        h, ids, lp = x  # [C, D], [C, K], [C, K]
        lse_s = _lse_pass(h, slices, student_softcap, temperature)
        # The K student logits by a gather of K unembedding rows: [C, K, D] . [C, D] -> [C, K].
        rows = student_unembed[ids].astype(h.dtype)
        z = jnp.einsum("CKD,CD->CK", rows, h, preferred_element_type=jnp.float32)
        log_q = softcap(z, student_softcap) / temperature - lse_s[:, None]
        log_p = jax.nn.log_softmax(lp / temperature, axis=-1)
        return None, jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)

    _, kl = jax.lax.scan(tile, None, xs)
    return kl.reshape(-1)[:n].reshape(B, T)


@functools.partial(jax.jit, static_argnames=("k", "chunk_size", "final_softcap"))
def teacher_topk(
    hidden: jax.Array,
    unembed: jax.Array,
    *,
    k: int,
    chunk_size: int = 256,
    final_softcap: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The teacher's top-k (ids [B, T, K] int32, log-probs [B, T, K] float32), one [C, V] tile at a
    time: the sparse targets `sparse_topk_kl` reads, computed once and stored with the data."""
    B, T, D = hidden.shape
    n = B * T
    n_tiles = -(-n // chunk_size)

    def tile(_, h):
        z = softcap(tile_logits(h, unembed.astype(h.dtype)), final_softcap)  # [C, V]
        lp, ids = jax.lax.top_k(jax.nn.log_softmax(z, axis=-1), k)
        return None, (ids.astype(jnp.int32), lp)

    _, (ids, lp) = jax.lax.scan(tile, None, _flat_tiles(hidden.reshape(n, D), n_tiles, chunk_size))
    return ids.reshape(-1, k)[:n].reshape(B, T, k), lp.reshape(-1, k)[:n].reshape(B, T, k)


def masked_mean(values: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum(values * mask) / max(sum(mask), 1), sum(mask)): the token mean of TRL's batchmean."""
    mask = mask.astype(jnp.float32)
    n = jnp.sum(mask)
    return jnp.sum(values * mask) / jnp.maximum(n, 1.0), n
