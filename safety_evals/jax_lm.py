"""`JaxLM`: the align JAX decoder behind the `LanguageModel` interface.

Scoring is one forward pass per batch of `batch_size` rows, T padded to a `score_bucket` length
(steps of 8 up to 64, then four steps per octave), so `jit` compiles once per bucket and never
per request. Only the positions that score a continuation token are unembedded: the host lists
them first in `order_M`, the device gathers their hidden states into chunks of C tokens and a
`lax.cond` skips every chunk past the last scored one. So padding and unscored context cost no
[C, V] logits (V is 262k for Gemma 3), and [B, T, V] float32 logits never exist whole. Per
scored token, in float32:

    log p(t) = z_t - logsumexp(z)        is_greedy = z_t >= max(z)

(z: the token's logits; no [C, V] log-softmax is materialised; an exact tie for the max counts as
greedy, where HF's argmax would pick the lower id). Request encoding is
lm-evaluation-harness's (`lm.encode_request`), so numbers compare with HFLM / `HFTorchLM`.
Generation goes through `align.sampling.generate` (KV cache, right-padded bucketed prompts).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from safety_evals.lm import (
    TokenScores,
    batched,
    encode_request,
    length_bucket,
    scoring_window,
    truncate_at_stop,
)

LOGITS_BUDGET = 1 << 27  # bytes of float32 [C, V] logits per unembedding chunk (128 MiB: C = 128 for Gemma 3)


def score_bucket(n: int, minimum: int = 8) -> int:
    """Smallest length >= max(n, minimum) on the ladder 8, 16, ..., 64, 80, 96, 112, 128, 160, ...
    (steps of 8, then a quarter of the power of two below): at most 8 tokens or 25% of a row is
    rounding padding, against up to 50% with powers of two, for a few more compiled shapes."""
    size = minimum
    while size < n:
        size += max(8, (1 << (size.bit_length() - 1)) // 4)
    return size


def chunk_size(B: int, T: int, V: int, budget: int | None = None) -> int:
    """Largest divisor C of T with B*C*V float32 logits within `budget` (default LOGITS_BUDGET,
    read at call time; at least 1)."""
    budget = LOGITS_BUDGET if budget is None else budget
    for C in range(T, 0, -1):
        if T % C == 0 and B * C * V * 4 <= budget:
            return C
    return 1


def _score(graphdef, state, tokens_BT, lengths_B, targets_BT, order_M, n_scored):
    """log p(target) and is-greedy [M] float32 / bool for the flat positions `order_M` (M = B*T,
    row-major index b*T + t); only the first `n_scored` entries are computed, the rest are 0."""
    model = nnx.merge(graphdef, state)
    B, T = tokens_BT.shape
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    segments = (positions < lengths_B[:, None]).astype(jnp.int32)  # 0 = padding, never attended
    hidden_MD = model.hidden(tokens_BT, positions, segments).reshape(B * T, -1)[order_M]
    M, V = B * T, model.config.vocab_size
    C = chunk_size(1, M, V)
    hidden_NCD = hidden_MD.reshape(M // C, C, -1)
    targets_NC = targets_BT.reshape(M)[order_M].reshape(M // C, C)
    starts_N = jnp.arange(M // C, dtype=jnp.int32) * C

    def compute(h_CD, t_C):
        z = model.logits(h_CD[None])[0]  # [C, V] float32 (soft-capped where the config says)
        z_t = jnp.take_along_axis(z, t_C[:, None], axis=-1)[:, 0]
        z_max = jnp.max(z, axis=-1)
        lse = z_max + jnp.log(jnp.sum(jnp.exp(z - z_max[:, None]), axis=-1))
        return z_t - lse, z_t >= z_max

    def skip(h_CD, t_C):
        return jnp.zeros((C,), jnp.float32), jnp.zeros((C,), bool)

    def chunk(args):
        h_CD, t_C, start = args
        return jax.lax.cond(start < n_scored, compute, skip, h_CD, t_C)

    picked, greedy = jax.lax.map(chunk, (hidden_NCD, targets_NC, starts_N))
    return picked.reshape(M), greedy.reshape(M)


_score_jit = jax.jit(_score, static_argnames=("graphdef",))


def layout(rows: Sequence[tuple[Sequence[int], int, int]], B: int, T: int, pad: int):
    """One scoring batch from rows of (window tokens, n scored, last continuation token).

    Window position t predicts token t+1 of ctx+cont, and the final target is the last continuation
    token (the one token the window itself leaves out); the last n positions are scored. Returns
    tokens, targets [B, T] int32, lengths [B] int32 (filler rows: one pad token), order [B*T] int32
    (flat scored positions b*T + t first, row by row in order, then all the others) and n_scored.
    """
    if len(rows) > B:
        raise ValueError(f"layout: {len(rows)} rows for a batch of {B}")
    tokens = np.full((B, T), pad, np.int32)
    targets = np.full((B, T), pad, np.int32)
    lengths = np.ones((B,), np.int32)
    scored: list[int] = []
    for b, (toks, n, last) in enumerate(rows):
        L = len(toks)
        if L > T:
            raise ValueError(f"layout: row {b} has {L} tokens, more than T={T}")
        lengths[b] = L
        if L:
            tokens[b, :L] = toks
            targets[b, :L] = list(toks[1:]) + [last]
        scored.extend(range(b * T + L - n, b * T + L))
    is_scored = np.zeros(B * T, bool)
    is_scored[scored] = True
    order = np.concatenate([np.asarray(scored, np.int64), np.flatnonzero(~is_scored)]).astype(np.int32)
    return tokens, targets, lengths, order, len(scored)


class JaxLM:
    """Wraps an `align.model.Decoder` and an `align.data.Tokenizer`.

    Args:
      add_bos: prepend BOS when encoding (lm-eval does for every Gemma model).
      max_length: scoring context window (default: the model config's max_seq_len).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str,
        batch_size: int = 8,
        add_bos: bool = True,
        max_length: int | None = None,
        cache_dtype=jnp.float32,
    ):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.add_bos = batch_size, add_bos
        self.max_length = max_length or int(model.config.max_seq_len)
        self.cache_dtype = cache_dtype
        self.prefix_id = tokenizer.bos_id
        self._graphdef, self._state = nnx.split(model)

    @classmethod
    def from_loaded(cls, loaded, *, name: str, **kwargs) -> JaxLM:
        """From `align.load(spec)` (an object with `.model` and `.tokenizer`)."""
        return cls(loaded.model, loaded.tokenizer, name=name, **kwargs)

    # ------------------------------------------------------------------ tokenization
    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_special_tokens and self.add_bos)

    def encode_request(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return encode_request(
            context, continuation, encode=self.encode, prefix_id=self.prefix_id, add_bos=self.add_bos
        )

    # ------------------------------------------------------------------ scoring
    def loglikelihood_tokens(self, requests: Sequence[tuple[list[int], list[int]]]) -> list[TokenScores]:
        windows = [scoring_window(c, k, self.max_length) for c, k in requests]
        # longest first, as lm-eval sorts: a batch's rows have similar lengths, so little padding
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        out: list[TokenScores | None] = [None] * len(windows)
        B, pad = self.batch_size, self.tokenizer.pad_id
        for chunk in batched(order, B):
            rows = [(*windows[i], requests[i][1][-1] if windows[i][1] else pad) for i in chunk]
            T = score_bucket(max(len(r[0]) for r in rows))
            tokens, targets, lengths, order_M, n_scored = layout(rows, B, T, pad)
            picked, greedy = jax.device_get(
                _score_jit(self._graphdef, self._state, tokens, lengths, targets, order_M, np.int32(n_scored))
            )
            start = 0
            for i, (_, n, _) in zip(chunk, rows):
                span = slice(start, start + n)
                out[i] = TokenScores(tuple(float(x) for x in picked[span]), bool(greedy[span].all()))
                start += n
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[TokenScores]:
        return self.loglikelihood_tokens([self.encode_request(c, k) for c, k in requests])

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_samples: int = 1,
        seed: int = 0,
        stop: Sequence[str] = (),
    ) -> list[list[str]]:
        from align.sampling import SamplingConfig, generate

        config = SamplingConfig(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p if top_p < 1.0 else None,
            stop_ids=self.tokenizer.stop_ids,
            pad_id=self.tokenizer.pad_id,
        )
        # each prompt repeated num_samples times; rows are independent samples
        rows = [(p, self.encode(p, True)) for p in prompts for _ in range(num_samples)]
        texts: list[str] = []
        rng = jax.random.PRNGKey(seed)
        for b, chunk in enumerate(batched(rows, self.batch_size)):
            P = length_bucket(max(len(ids) for _, ids in chunk))
            tokens = np.full((self.batch_size, P), self.tokenizer.pad_id, np.int32)
            lengths = np.ones((self.batch_size,), np.int32)
            for row, (_, ids) in enumerate(chunk):
                tokens[row, : len(ids)] = ids
                lengths[row] = len(ids)
            res = generate(
                self.model, tokens, lengths, config, jax.random.fold_in(rng, b), cache_dtype=self.cache_dtype
            )
            gen, n = jax.device_get((res.tokens, res.lengths))
            for row in range(len(chunk)):
                ids = [int(t) for t in gen[row, : n[row]] if int(t) not in config.stop_ids]
                texts.append(truncate_at_stop(self.tokenizer.decode(ids), stop))
        return [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]
