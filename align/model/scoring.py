"""Log-probabilities of given targets straight from final hidden states, for scoring without gradients.

Shapes: C tokens, D model dim, V vocab, Vc vocabulary entries per block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from align.model.layers import softcap


def streamed_token_logprobs(
    hidden: jax.Array,
    unembed: jax.Array,
    targets: jax.Array,
    *,
    vocab_chunk: int = 1024,
    final_softcap: float | None = None,
    temperature: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """log p(target) and "target is a most likely token" for C tokens, the vocabulary streamed in chunks.

    For scoring without gradients (`safety_evals.lm.jax_lm`). One [C, Vc] logits block exists at a
    time, reduced as it is made by an online logsumexp over the vocabulary chunks k:

        z_v = softcap(h . E_v) / temperature
        m_k = max(m_{k-1}, max_{v in k} z_v),   s_k = s_{k-1} exp(m_{k-1} - m_k) + sum_{v in k} exp(z_v - m_k)
        log p(t) = z_t - m_K - log s_K,          is_max = z_t >= m_K

    z_t is read from the same block that feeds the max, so an exact tie counts as a most likely token.
    Why: a whole [C, V] tile (V = 262144) goes to memory and is read back by the max, exp and sum
    passes; blocks of Vc columns stay in cache, and with them C can grow to hundreds of rows, each
    tile reading the [V, D] table once, so the matmuls run near the CPU's float32 rate instead of
    waiting on memory (benchmarks/RESULTS.md, CrowS-Pairs scoring).

    Args:
      hidden: [C, D] final-normed hidden states.
      unembed: [V, D] output embedding.
      targets: [C] int ids in [0, V).
      vocab_chunk: Vc, vocabulary entries per block (a last, smaller block takes V mod Vc).

    Returns:
      ([C] float32 log-probabilities, [C] bool).
    """
    C, D = hidden.shape
    V = unembed.shape[0]
    if targets.shape != (C,) or unembed.shape != (V, D):
        raise ValueError(
            f"streamed_token_logprobs: hidden {hidden.shape}, unembed {unembed.shape} and targets "
            f"{targets.shape} do not fit [C, D], [V, D], [C]"
        )
    unembed = unembed.astype(hidden.dtype)
    targets = targets.astype(jnp.int32)

    def block(carry, table_KD, start):
        m, s, z_t = carry
        z = jnp.einsum("CD,KD->CK", hidden, table_KD, preferred_element_type=jnp.float32)
        z = softcap(z, final_softcap) / temperature  # [C, Vc]
        m_new = jnp.maximum(m, jnp.max(z, axis=-1))
        s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new[:, None]), axis=-1)
        local = targets - start
        inside = (local >= 0) & (local < z.shape[1])
        picked = jnp.take_along_axis(z, jnp.clip(local, 0, z.shape[1] - 1)[:, None], axis=-1)[:, 0]
        return m_new, s, jnp.where(inside, picked, z_t)

    Vc = min(vocab_chunk, V)
    n_full = V // Vc
    carry = (
        jnp.full((C,), -jnp.inf, jnp.float32),
        jnp.zeros((C,), jnp.float32),
        jnp.zeros((C,), jnp.float32),
    )

    def step(c, start):  # a slice of the table, not a reshaped copy of it when Vc does not divide V
        return block(c, jax.lax.dynamic_slice_in_dim(unembed, start, Vc), start), None

    carry, _ = jax.lax.scan(step, carry, jnp.arange(n_full, dtype=jnp.int32) * Vc)
    if V > n_full * Vc:
        carry = block(carry, unembed[n_full * Vc :], n_full * Vc)
    m, s, z_t = carry
    return z_t - m - jnp.log(s), z_t >= m
