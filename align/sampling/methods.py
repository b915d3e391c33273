"""Next-token selection: greedy, temperature, top-k and top-p (nucleus), as one pure function."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. temperature 0 means greedy; top_k / top_p filter before sampling."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        # the config is a static jit argument, so it must hash: a list of stop ids would not
        object.__setattr__(self, "stop_ids", tuple(int(i) for i in self.stop_ids))
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _scaled(logits: jax.Array, config: SamplingConfig) -> jax.Array:
    """logits / temperature in float32 (unscaled when greedy): the log-probs up to a per-row constant."""
    logits = logits.astype(jnp.float32)
    return logits if config.greedy else logits / config.temperature


def scaled_logprobs(logits: jax.Array, config: SamplingConfig, axis: int = -1) -> jax.Array:
    """log softmax(logits / temperature) over the vocab `axis`, float32: the log-probs RL uses."""
    return jax.nn.log_softmax(_scaled(logits, config), axis=axis)


# Filtered-out tokens get a large finite negative rather than -inf, so noise added to them stays finite.
_DROPPED = -1e30


def _keep_indices(shape, rows_idx) -> jax.Array:
    """Boolean [B, V] mask that is True at the given per-row token indices [B, k]."""
    rows = jnp.arange(shape[0])[:, None]
    return jnp.zeros(shape, bool).at[rows, rows_idx].set(True)


def _filter(logprobs: jax.Array, config: SamplingConfig) -> jax.Array:
    """Drop tokens outside top-k, then outside the top-p nucleus of what is left (HF's order).

    `logprobs` [B, V] may be any per-row shift of the log-probs (the scaled logits): only their
    order and softmax are used.

    Masks are built from indices, never by comparing values against a threshold: XLA may recompute
    log_softmax in two fusions that differ in the last bit, and `x < max(x)` then drops the maximum.
    """
    if config.top_k is not None:
        # a top_k beyond the vocab keeps every token (as transformers does) rather than failing in lax
        _, idx = jax.lax.top_k(logprobs, min(config.top_k, logprobs.shape[-1]))
        logprobs = jnp.where(_keep_indices(logprobs.shape, idx), logprobs, _DROPPED)
    if config.top_p is not None and config.top_p < 1.0:
        order = jnp.argsort(-logprobs, axis=-1)
        probs = jax.nn.softmax(jnp.take_along_axis(logprobs, order, axis=-1), axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the token that crosses it is kept)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < config.top_p
        idx = jnp.where(keep_sorted, order, order[:, :1])  # dropped slots point at the top token
        logprobs = jnp.where(_keep_indices(logprobs.shape, idx), logprobs, _DROPPED)
    return logprobs


def _vocab_blocks(x: jax.Array) -> tuple[jax.Array, jax.Array] | None:
    """x [V, B] -> (x as [V/C, C, B] blocks of C rows, their maxima [V/C, B]); None when V has no block
    size C of 16 to 512 rows (then the plain reductions down axis 0 are used)."""
    V, B = x.shape
    C = math.gcd(V, 512)
    if C < 16:
        return None
    blocks = x.reshape(V // C, C, B)
    return blocks, blocks.max(axis=1)


def argmax_vocab_major(x: jax.Array, blocks=None) -> jax.Array:
    """jnp.argmax(x, axis=0) for x [V, B] (first occurrence), as one max pass and two small argmaxes.

    XLA:CPU's (value, index) reduction down the major axis is slow, over an order of magnitude slower
    than a max over blocks of C rows, an argmax of the [V/C, B] block maxima (the first block holding
    the max) and an argmax inside that block (benchmarks/RESULTS.md, generation).
    blocks: `_vocab_blocks(x)`, when the caller has it already.
    """
    blocks = _vocab_blocks(x) if blocks is None else blocks
    if blocks is None:
        return jnp.argmax(x, axis=0)
    rows, block_max = blocks
    first = jnp.argmax(block_max, axis=0)  # [B]
    inside = jnp.argmax(rows[first, :, jnp.arange(x.shape[1])], axis=-1)  # [B, C] -> [B]
    return first * rows.shape[1] + inside


def logsumexp_vocab_major(x: jax.Array, blocks=None) -> jax.Array:
    """jax.nn.logsumexp(x, axis=0) for x [V, B], with the max taken from the block maxima.

    m + log(sum(exp(x - m))): given the blocks, one pass over x instead of two (a max, then the sum).
    With greedy decoding's argmax, the logits are read twice a step, not three times (a memory-bound
    pass over the [V, B] logits saved each step; benchmarks/RESULTS.md).
    The barrier keeps XLA from rewriting the max of the block maxima as a max over x (a second pass).
    """
    blocks = _vocab_blocks(x) if blocks is None else blocks
    if blocks is None:
        return jax.nn.logsumexp(x, axis=0)
    m = jax.lax.stop_gradient(jax.lax.optimization_barrier(blocks[1]).max(axis=0))  # [B]
    m = jnp.where(jnp.isfinite(m), m, 0.0)  # all -inf (or an inf): let the sum say so, as logsumexp does
    return m + jnp.log(jnp.sum(jnp.exp(x - m), axis=0))


def is_row_keys(rng: jax.Array) -> bool:
    """Whether `rng` holds one key per row ([B] typed keys or [B, 2] raw ones) rather than one key."""
    return rng.ndim == (1 if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) else 2)


def _gumbel(rng: jax.Array, shape: tuple[int, int], vocab_major: bool) -> jax.Array:
    """Gumbel noise of `shape` ([B, V], or [V, B] if vocab_major). With one key per row, row b's noise
    comes from its own key alone: its samples then do not depend on the other rows (nor on B, nor on
    the layout). With one key, the whole block is drawn at once."""
    if not is_row_keys(rng):
        return jax.random.gumbel(rng, shape, jnp.float32)
    V = shape[0] if vocab_major else shape[1]
    draw = functools.partial(jax.random.gumbel, shape=(V,), dtype=jnp.float32)
    return jax.vmap(draw, out_axes=1 if vocab_major else 0)(rng)


def sample_next(
    logits: jax.Array, rng: jax.Array, config: SamplingConfig, *, vocab_major: bool = False
) -> tuple[jax.Array, jax.Array]:
    """logits [B, V] ([V, B] if vocab_major) -> (token [B], its log-prob under softmax(logits / T) [B]).

    The log-prob is logit[token] / T - logsumexp(logits / T): the full [B, V] log-softmax is never
    written out (a [B, V] write and read saved each decode step, same tokens; benchmarks/RESULTS.md).
    Filters and argmax read the scaled logits, which order tokens as the log-probs do.

    vocab_major takes the logits as Decoder.next_token_logits gives them for CPU decoding. Its
    Gumbel noise has the [V, B] shape, so one rng draws other tokens than in the [B, V] layout
    (the same distribution). `rng` may also be one key per row (see `_gumbel`).
    """
    axis = 0 if vocab_major else 1
    scaled = _scaled(logits, config)
    if vocab_major:  # the block maxima serve both the greedy argmax and the logsumexp
        blocks = _vocab_blocks(scaled)
        argmax = functools.partial(argmax_vocab_major, blocks=blocks if config.greedy else None)
        logsumexp = functools.partial(logsumexp_vocab_major, blocks=blocks)
    else:
        argmax = functools.partial(jnp.argmax, axis=1)
        logsumexp = functools.partial(jax.nn.logsumexp, axis=1)
    if config.greedy:
        token = argmax(scaled)
    else:
        # Gumbel-max: argmax(log p + Gumbel noise) is a draw from p (log p = scaled logits + a constant).
        noise = _gumbel(rng, scaled.shape, vocab_major)
        filtered = _filter(scaled.T, config).T if vocab_major else _filter(scaled, config)
        token = argmax(filtered + noise)
    token = token.astype(jnp.int32)
    picked = jnp.take_along_axis(scaled, jnp.expand_dims(token, axis), axis=axis).squeeze(axis)
    return token, picked - logsumexp(scaled)
