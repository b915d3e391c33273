"""`JaxLM`: the align JAX decoder behind the `LanguageModel` interface.

Scoring is one forward pass per batch: the final hidden states are unembedded chunk by chunk over
T (so [B, T, V] float32 logits never exist whole: V is 262k for Gemma 3; see `chunk_size`),
log_softmax in float32, and the target token's log-prob gathered. Batches are padded to
`batch_size` rows and T to a power-of-two bucket, so `jit` compiles once per bucket and never per
request. Request encoding is lm-evaluation-harness's (`lm.encode_request`), so numbers compare
with HFLM / `HFTorchLM`.
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

LOGITS_BUDGET = 1 << 29  # bytes of float32 [B, C, V] logits per chunk (512 MiB)


def chunk_size(B: int, T: int, V: int, budget: int = LOGITS_BUDGET) -> int:
    """Largest power of two C <= T with B*C*V float32 logits within `budget` (at least 1).
    T is a power of two, so C divides it."""
    C = T
    while C > 1 and B * C * V * 4 > budget:
        C //= 2
    return C


def _score(graphdef, state, tokens_BT, lengths_B, targets_BT):
    """(log p(target_t | tokens_<=t) [B, T] float32, target is the argmax [B, T] bool)."""
    model = nnx.merge(graphdef, state)
    B, T = tokens_BT.shape
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    segments = (positions < lengths_B[:, None]).astype(jnp.int32)  # 0 = padding, never attended
    hidden = model.hidden(tokens_BT, positions, segments)  # [B, T, D]
    C = chunk_size(B, T, model.config.vocab_size)
    hidden_NBCD = hidden.reshape(B, T // C, C, -1).swapaxes(0, 1)  # [T/C, B, C, D]
    targets_NBC = targets_BT.reshape(B, T // C, C).swapaxes(0, 1)

    def chunk(args):
        h, tgt = args
        logits = model.logits(h).astype(jnp.float32)  # [B, C, V]; float32 so log_softmax is stable
        logp = jax.nn.log_softmax(logits, axis=-1)
        picked = jnp.take_along_axis(logp, tgt[..., None], axis=-1)[..., 0]
        return picked, jnp.argmax(logits, axis=-1) == tgt

    picked, greedy = jax.lax.map(chunk, (hidden_NBCD, targets_NBC))
    return picked.swapaxes(0, 1).reshape(B, T), greedy.swapaxes(0, 1).reshape(B, T)


_score_jit = jax.jit(_score, static_argnames=("graphdef",))


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
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        out: list[TokenScores | None] = [None] * len(windows)
        B, pad = self.batch_size, self.tokenizer.pad_id
        for chunk in batched(order, B):
            T = length_bucket(max(len(windows[i][0]) for i in chunk))
            tokens = np.full((B, T), pad, np.int32)
            targets = np.full((B, T), pad, np.int32)
            lengths = np.ones((B,), np.int32)  # filler rows: one pad token, results ignored
            for row, i in enumerate(chunk):
                toks, n = windows[i]
                L = len(toks)
                # window position t predicts token t+1 of ctx+cont; the final target is the last
                # continuation token (the one token the window itself leaves out)
                tokens[row, :L] = toks
                targets[row, : L - 1] = toks[1:]
                targets[row, L - 1] = requests[i][1][-1] if n else pad
                lengths[row] = L
            picked, greedy = jax.device_get(_score_jit(self._graphdef, self._state, tokens, lengths, targets))
            for row, i in enumerate(chunk):
                L, n = lengths[row], windows[i][1]
                out[i] = TokenScores(
                    tuple(float(x) for x in picked[row, L - n : L]), bool(greedy[row, L - n : L].all())
                )
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
