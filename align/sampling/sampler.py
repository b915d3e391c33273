"""Batched KV-cache generation under one jit: prefill, then a lax.while_loop of decode steps.

Prompts are right-padded [B, P] with their lengths. Every row decodes into the same cache slot at each
step; a shorter prompt simply leaves empty (segment 0, never attended) slots before its first new
token, and positions are explicit, so RoPE and sliding windows see contiguous positions per row.
Buffer sizes depend only on (B, P, max_new_tokens): repeated calls of one shape never recompile.

Logits are formed for the next token only (the prefill's last prompt position, then each step), never
for the whole prompt. With `cpu_layout` (the default when the weights live on CPU) the loop decodes
with vocab-major logits, the form XLA:CPU streams fastest for a few rows, one matrix-vector product
per query over the cache and rotary sin/cos from tables made before the loop (`Decoder.for_decoding`);
`out_first_weights` adds [out, in] copies of the layer weights, which paid off on one machine and
not on another (see generate); `decode_weights="bfloat16"` runs the loop on a bfloat16 copy of the
matmul weights with float32 sums (half the bytes a step streams; see generate for why it is not the
default).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align import distributed
from align.model import Decoder, init_cache
from align.sampling import json_mode
from align.sampling.methods import SamplingConfig, is_row_keys, sample_next


@flax.struct.dataclass
class SampleResult:
    tokens: jax.Array  # [B, M] generated tokens; pad after a stop token
    logprobs: jax.Array  # [B, M] log-prob of each generated token under softmax(logits / T); 0 after stop
    lengths: jax.Array  # [B] number of generated tokens, the stop token included


@flax.struct.dataclass
class _LoopState:
    step: jax.Array
    cache: object
    last: jax.Array  # [B] token fed at this step
    tokens: jax.Array  # [B, M]
    logprobs: jax.Array  # [B, M]
    done: jax.Array  # [B]
    rng: jax.Array
    json: json_mode.JsonState | None = None  # JSON mode's parser state, when it is on


def _split(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(next carry, key for this step), row by row when `rng` holds one key per row."""
    if is_row_keys(rng):
        keys = jax.vmap(jax.random.split)(rng)  # [B, 2, ...]
        return keys[:, 0], keys[:, 1]
    carry, sub = jax.random.split(rng)
    return carry, sub


def _is_stop(token, config: SamplingConfig):
    stops = jnp.asarray(config.stop_ids or (-1,), jnp.int32)
    return jnp.any(token[:, None] == stops[None, :], axis=-1)


def _generate(
    graphdef,
    state,
    prompt,
    lengths,
    rng,
    config: SamplingConfig,
    cache_dtype,
    cpu_layout: bool,
    out_first_weights: bool = False,
    json_tables: json_mode.JsonTables | None = None,
    decode_weights: str = "float32",
) -> SampleResult:
    model = nnx.merge(graphdef, state)
    B, P = prompt.shape
    M = config.max_new_tokens
    # P + M slots: the prefill writes P, the loop M - 1 (the last token is never fed). The Decoder cannot
    # check a traced cache index for overflow, so this sizing is what guarantees it.
    cache = init_cache(model.config, B, P + M, cache_dtype)
    positions = jnp.broadcast_to(jnp.arange(P, dtype=jnp.int32), (B, P))
    segments = (positions < lengths[:, None]).astype(jnp.int32)
    out = model(prompt, positions, segments, cache, return_logits=False)
    last_hidden = jnp.take_along_axis(out.hidden, (lengths - 1)[:, None, None], axis=1)[:, 0]  # [B, D]
    # positions stay below P + M, the cache size (prompt slots, then one position a step)
    weight_dtype = None if decode_weights == "float32" else decode_weights
    if cpu_layout:
        step_model = model.for_decoding(
            n_positions=P + M, out_first=out_first_weights, weight_dtype=weight_dtype
        )
    elif weight_dtype is not None:
        step_model = nnx.merge(*nnx.split(model))
        step_model.store_weights(weight_dtype)
    else:
        step_model = model

    def next_token(hidden, rng, parse, step):  # [B, D] -> (token [B], log-prob [B], parse state)
        logits = step_model.next_token_logits(hidden, vocab_major=cpu_layout)
        if json_tables is None:
            return (*sample_next(logits, rng, config, vocab_major=cpu_layout), None)
        mask, after = json_mode.allowed(json_tables, parse, M - step)
        # a large finite negative, as the top-k/top-p filters use: log-probs are under the masked softmax
        logits = jnp.where(mask.T if cpu_layout else mask, logits, -1e30)
        tok, lp = sample_next(logits, rng, config, vocab_major=cpu_layout)
        return tok, lp, json_mode.advance(json_tables, parse, after, tok)

    rng, sub = _split(rng)
    parse = None if json_tables is None else json_mode.JsonState.start(B)
    first, first_lp, parse = next_token(last_hidden, sub, parse, 0)
    done = _is_stop(first, config)
    state0 = _LoopState(
        step=jnp.ones((), jnp.int32),
        cache=out.cache,
        last=first,
        tokens=jnp.full((B, M), config.pad_id, jnp.int32).at[:, 0].set(first),
        logprobs=jnp.zeros((B, M), jnp.float32).at[:, 0].set(first_lp),
        done=done,
        rng=rng,
        json=parse,
    )

    def cond(s: _LoopState):
        return (s.step < M) & ~jnp.all(s.done)

    def body(s: _LoopState):
        pos = (lengths + s.step - 1)[:, None]  # position of the token fed now
        o = step_model(s.last[:, None], pos, jnp.ones((B, 1), jnp.int32), s.cache, return_logits=False)
        rng, sub = _split(s.rng)
        tok, lp, parse = next_token(o.hidden[:, 0], sub, s.json, s.step)
        tok = jnp.where(s.done, config.pad_id, tok)
        lp = jnp.where(s.done, 0.0, lp)
        return _LoopState(
            step=s.step + 1,
            cache=o.cache,
            last=tok,
            tokens=s.tokens.at[:, s.step].set(tok),
            logprobs=s.logprobs.at[:, s.step].set(lp),
            done=s.done | _is_stop(tok, config),
            rng=rng,
            json=parse,
        )

    final = jax.lax.while_loop(cond, body, state0)
    # length = index of the first stop token + 1, or M when none was emitted
    is_stop = jnp.any(final.tokens[..., None] == jnp.asarray(config.stop_ids or (-1,))[None, None], -1)
    first_stop = jnp.where(jnp.any(is_stop, -1), jnp.argmax(is_stop, -1) + 1, M)
    return SampleResult(tokens=final.tokens, logprobs=final.logprobs, lengths=first_stop.astype(jnp.int32))


# One jitted function for every model and config: jit's own cache keys on (graphdef, config, shapes).
_generate_jit = jax.jit(
    _generate,
    static_argnames=(
        "graphdef",
        "config",
        "cache_dtype",
        "cpu_layout",
        "out_first_weights",
        "decode_weights",
    ),
)
DECODE_WEIGHTS = ("float32", "bfloat16")


def _on_cpu(state) -> bool:
    """Whether the model's weights live on CPU (host arrays count as the default backend's)."""
    leaf = next(iter(jax.tree.leaves(state)), None)
    if not isinstance(leaf, jax.Array):
        return jax.default_backend() == "cpu"
    return all(d.platform == "cpu" for d in leaf.devices())


def _check_lengths(lengths, P: int, M: int, max_seq_len: int) -> None:
    """Raise unless 1 <= length <= P and length + M <= max_seq_len in every row.

    Inside the loop a length 0 would read the hidden state at index -1 (a padding slot) and one past P
    an out-of-range slot (a NaN log-prob), both silently. Lengths are concrete here unless generate
    itself runs under a trace, where they cannot be checked.
    """
    if isinstance(lengths, jax.core.Tracer):
        return
    n = distributed.host_array(lengths)  # rows spread over hosts: a collective
    bad = np.flatnonzero((n < 1) | (n > P))
    if bad.size:
        raise ValueError(
            f"prompt_lengths must be in [1, P={P}]; rows {bad.tolist()} have lengths {n[bad].tolist()}"
        )
    bad = np.flatnonzero(n + M > max_seq_len)
    if bad.size:
        raise ValueError(
            f"prompt length + max_new_tokens={M} exceeds the model's max_seq_len={max_seq_len} "
            f"in rows {bad.tolist()} (prompt lengths {n[bad].tolist()})"
        )


def generate(
    model: Decoder,
    prompt_tokens,
    prompt_lengths,
    config: SamplingConfig,
    rng=None,
    *,
    cache_dtype=jnp.float32,
    cpu_layout: bool | None = None,
    out_first_weights: bool = False,
    json_tables: json_mode.JsonTables | None = None,
    decode_weights: str = "float32",
) -> SampleResult:
    """Sample `config.max_new_tokens` tokens after each right-padded prompt [B, P] of length [B].

    rng: one key for the batch, or one key per row ([B] typed or [B, 2] raw keys); with per-row keys a
    row's samples depend only on its key and prompt, not on the batch it is in.
    cpu_layout: decode with vocab-major logits and for_decoding's attention (see the module
    docstring); None picks it when the weights live on CPU.
    out_first_weights (with cpu_layout): decode with [out, in] copies of the layer weights, made once
    a call (Decoder.for_decoding's out_first). Whether it pays depends on the CPU: on some it speeds
    the layer matmuls up a lot, on others the steps are no faster and the copy (the size of the layer
    weights) is a fixed cost per call (benchmarks/RESULTS.md). Try it on your machine with
    benchmarks/generate.py --out-first.
    json_tables: decode in JSON mode (align.sampling.json_mode: `json_tables(tokenizer)`): every row's
    text is a JSON prefix at every step and a whole JSON value when it stops or reaches
    max_new_tokens; needs config.stop_ids to be the tokenizer's. Log-probs are then those of the
    softmax over the allowed tokens.
    decode_weights: "float32" or "bfloat16", the storage of the weights the decode loop reads (the
    prompt's prefill always runs on the model as it is). "bfloat16" casts a copy of the matmul
    weights once a call (Decoder.store_weights: half the bytes per step, float32 sums, float32
    logits and log-probs; the hidden state is rounded to bfloat16 at each dot's input). It pays
    where the steps are bound by streaming the weights and the chip multiplies bfloat16 natively
    (accelerators; CPUs with AVX512-BF16 or AMX: up to ~2x tokens/s on gemma3-270m); on a CPU
    without (AVX2 only) the dots convert and run slower than float32 (benchmarks/RESULTS.md). Float32
    is the default because the greedy tokens are no longer float32's (on generate.py's 8 prompts,
    over 128 greedy tokens, 2 rows took another token at some step and every token after it: 90% of
    tokens equal; a tiny random model's logits moved by up to ~2% of their spread,
    tests/sampling/test_decode_weights.py), and RL rollouts
    scored later by a float32 forward would carry that as off-policy noise in every importance ratio.
    Raises ValueError for a prompt length outside [1, P] or a length + max_new_tokens past
    max_seq_len, or for a decode_weights not in DECODE_WEIGHTS.
    """
    if decode_weights not in DECODE_WEIGHTS:
        raise ValueError(f"decode_weights must be one of {DECODE_WEIGHTS}, got {decode_weights!r}")
    rng = jax.random.PRNGKey(0) if rng is None else rng
    prompt = jnp.asarray(prompt_tokens, jnp.int32)
    lengths = jnp.asarray(prompt_lengths, jnp.int32)
    if prompt.ndim != 2 or lengths.shape != prompt.shape[:1]:
        raise ValueError(
            f"prompt_tokens must be [B, P] and prompt_lengths [B]; got {prompt.shape}, {lengths.shape}"
        )
    if is_row_keys(rng) and rng.shape[0] != prompt.shape[0]:
        raise ValueError(f"{rng.shape[0]} per-row keys for {prompt.shape[0]} rows")
    _check_lengths(lengths, prompt.shape[1], config.max_new_tokens, model.config.max_seq_len)
    graphdef, state = nnx.split(model)
    cpu_layout = _on_cpu(state) if cpu_layout is None else cpu_layout
    return _generate_jit(
        graphdef,
        state,
        prompt,
        lengths,
        rng,
        config=config,
        cache_dtype=cache_dtype,
        cpu_layout=cpu_layout,
        out_first_weights=cpu_layout and out_first_weights,
        json_tables=json_tables,
        decode_weights=decode_weights,
    )


def compiled_count() -> int:
    """How many distinct programs the sampler has compiled (for no-recompile tests)."""
    return _generate_jit._cache_size()
