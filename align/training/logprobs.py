"""Per-token log-probabilities and entropies, shared by SFT, DPO, reward models and RL.

Alignment convention: `logits[:, t]` scores `targets[:, t]`. Callers shift once, where the batch is
built (targets = tokens[:, 1:], logits from tokens[:, :-1]); nothing in this file shifts again.

All softmax arithmetic runs in float32 whatever the logits dtype: in bfloat16 a log-softmax over a
262k vocabulary loses about 3 significant digits, enough to bias PPO ratios and DPO margins.

Shapes: B batch, T time, D model dim, V vocab, C tokens per chunk, N = B*T flattened tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from align.model.layers import softcap


def token_logprobs(logits: jax.Array, targets: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    """log p(targets[b, t] | logits[b, t]) = z[target] - logsumexp(z), z = logits / temperature.

    Args:
      logits: [B, T, V] any float dtype.
      targets: [B, T] int ids in [0, V). Replace ignored labels (HF's -100) by any valid id and mask
        them out afterwards: an out-of-range id yields NaN, not 0.
      temperature: the sampling temperature the tokens were drawn with (RL must score samples
        under the distribution that produced them).

    Returns:
      [B, T] float32 log-probabilities.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"token_logprobs: logits {logits.shape} and targets {targets.shape} disagree on [B, T]"
        )
    z = logits.astype(jnp.float32) / temperature
    log_p = jax.nn.log_softmax(z, axis=-1)  # [B, T, V]
    return jnp.take_along_axis(log_p, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def token_entropy(logits: jax.Array, *, temperature: float = 1.0) -> jax.Array:
    """Shannon entropy in nats of each next-token distribution: H = -sum_v p_v log p_v.

    Args:
      logits: [B, T, V].

    Returns:
      [B, T] float32. Vocabulary entries masked with -inf contribute 0 (not NaN).
    """
    z = logits.astype(jnp.float32) / temperature
    log_p = jax.nn.log_softmax(z, axis=-1)
    p = jnp.exp(log_p)
    # 0 * -inf is NaN: drop the zero-probability entries explicitly.
    return -jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=-1)


def sequence_logprob(token_lp: jax.Array, mask: jax.Array) -> jax.Array:
    """log p(y | x) = sum_t mask[b, t] * token_lp[b, t]  ->  [B].

    The sum (not the mean) is the sequence log-likelihood used by DPO (Rafailov et al. 2023, eq. 7)
    and by sequence-level rewards; divide by `mask.sum(-1)` where a length-normalised value is wanted.
    """
    if token_lp.shape != mask.shape:
        raise ValueError(f"sequence_logprob: token_lp {token_lp.shape} and mask {mask.shape} differ")
    return jnp.sum(token_lp * mask.astype(token_lp.dtype), axis=-1)


@jax.custom_vjp
def tile_logits(hidden: jax.Array, unembed: jax.Array) -> jax.Array:
    """[C, D] x [V, D] -> float32 [C, V] logits, with both matmuls of the backward pass in the
    operands' dtype.

    Operands in the compute dtype (bf16 activations with float32 master weights must not promote
    the largest matmul of the model to float32); accumulation in float32, since the logits feed an
    exp. Plain autodiff would hand the float32 cotangent to the two backward matmuls, i.e. mixed
    float32 x bf16 dots; here it is cast to the operands' dtype first (identity in float32).
    """
    return jnp.einsum("CD,VD->CV", hidden, unembed, preferred_element_type=jnp.float32)


def _tile_logits_fwd(hidden, unembed):
    return tile_logits(hidden, unembed), (hidden, unembed)


def _tile_logits_bwd(res, g):
    hidden, unembed = res
    g = g.astype(hidden.dtype)
    return (
        jnp.einsum("CV,VD->CD", g, unembed, preferred_element_type=jnp.float32).astype(hidden.dtype),
        jnp.einsum("CV,CD->VD", g, hidden, preferred_element_type=jnp.float32).astype(unembed.dtype),
    )


tile_logits.defvjp(_tile_logits_fwd, _tile_logits_bwd)


def _chunk_stats(
    hidden: jax.Array,
    unembed: jax.Array,
    targets: jax.Array,
    final_softcap: float | None,
    temperature: float,
    with_entropy: bool,
) -> tuple[jax.Array, jax.Array | None]:
    """Log-prob of the target (and entropy if asked) for one chunk of tokens: [C, D] -> [C]."""
    z = tile_logits(hidden, unembed.astype(hidden.dtype))
    z = softcap(z, final_softcap) / temperature  # [C, V]
    lse = jax.nn.logsumexp(z, axis=-1)  # [C]
    target_logit = jnp.take_along_axis(z, targets[:, None], axis=-1)[:, 0]
    if not with_entropy:
        return target_logit - lse, None
    # H = logsumexp(z) - sum_v p_v z_v, with p = softmax(z).
    entropy = lse - jnp.sum(jax.nn.softmax(z, axis=-1) * z, axis=-1)
    return target_logit - lse, entropy


def chunked_token_logprobs(
    hidden: jax.Array,
    unembed: jax.Array,
    targets: jax.Array,
    *,
    chunk_size: int,
    final_softcap: float | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """`token_logprobs(softcap(hidden @ unembed.T), targets)` without the full [B, T, V] logits.

    The B*T tokens are flattened and cut into chunks of `chunk_size` tokens; a `lax.scan` computes
    one [C, V] logits tile at a time. The scan body is wrapped in `jax.checkpoint`, so the backward
    pass recomputes each tile instead of storing all of them: peak logits memory is C * V * 4 bytes
    in both passes (the naive version holds B * T * V, e.g. 8 x 2048 x 262144 x 4 B = 17 GB).

    Args:
      hidden: [B, T, D] final-normed hidden states (the input of the unembedding).
      unembed: [V, D] output embedding (tied input embedding for Gemma).
      targets: [B, T] int ids in [0, V) (see `token_logprobs`).
      chunk_size: tokens per tile C (>= 1). The last tile is zero-padded and the padding dropped.
      final_softcap: Gemma 2's `final_logit_softcapping` (None: no capping).
      temperature: logits are divided by this after capping.
      return_entropy: also return the per-token entropy [B, T].

    Returns:
      [B, T] float32 log-probabilities, or (log-probabilities, entropies) when `return_entropy`.
    """
    if chunk_size < 1:
        raise ValueError(f"chunked_token_logprobs: chunk_size must be >= 1, got {chunk_size}")
    B, T, D = hidden.shape
    if targets.shape != (B, T) or unembed.shape[-1] != D:
        raise ValueError(
            f"chunked_token_logprobs: hidden {hidden.shape}, unembed {unembed.shape} and targets "
            f"{targets.shape} do not fit [B, T, D], [V, D], [B, T]"
        )
    n = B * T
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    flat_h = jnp.pad(hidden.reshape(n, D), ((0, pad), (0, 0)))  # [N + pad, D]
    flat_t = jnp.pad(targets.reshape(n).astype(jnp.int32), (0, pad))  # [N + pad]
    xs = (flat_h.reshape(n_chunks, chunk_size, D), flat_t.reshape(n_chunks, chunk_size))

    @jax.checkpoint
    def body(_, chunk):
        h, t = chunk  # [C, D], [C]
        return None, _chunk_stats(h, unembed, t, final_softcap, temperature, return_entropy)

    _, (lp, ent) = jax.lax.scan(body, None, xs)  # [n_chunks, C] each
    lp = lp.reshape(-1)[:n].reshape(B, T)
    if not return_entropy:
        return lp
    return lp, ent.reshape(-1)[:n].reshape(B, T)
