"""`JaxLM`: the align JAX decoder behind the `LanguageModel` interface.

Scoring lays requests out as `safety_evals.lm.packing` plans: requests that start with the same
tokens share one prefix tree (the context of a multiple-choice question read once for all its
answers), and trees of up to `pack_tokens` tokens are packed several to a row, each its own
segment, so short requests such as CrowS-Pairs sentences pay for almost no padding. A forward
pass takes R <= `batch_size` rows of T tokens (a few shapes, so `jit` compiles once per shape and
never per request). Only the distinct (position, target) entries that score a continuation token
are unembedded: the device gathers their hidden states into tiles of up to TILE_ROWS entries, a
`lax.cond` skips every tile past the last one, and each tile streams the vocabulary
(`align.model.scoring.streamed_token_logprobs`), so no [C, V] logits block exists (V is 262k for
Gemma 3). Per scored token, in float32:

    log p(t) = z_t - logsumexp(z)        is_greedy = z_t >= max(z)

(z: the token's logits; an exact tie for the max counts as greedy, where HF's argmax would pick
the lower id). Request encoding is lm-evaluation-harness's (`lm.encode_request`), so numbers
compare with HFLM / `HFTorchLM`.
Generation goes through `align.sampling.generate` (KV cache, right-padded bucketed prompts).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align.distributed import host_array
from align.model.attention import attention_mask
from align.model.scoring import streamed_token_logprobs
from align.model.sharding import jit_on_mesh, mesh_scope, shard_rows, shard_state
from safety_evals.lm import packing
from safety_evals.lm.protocol import (
    TokenScores,
    batched,
    encode_request,
    scoring_window,
    truncate_at_stop,
)

PACK_TOKENS = 128  # row length that requests (or prefix trees) this short are packed into, several to a row
TILE_ROWS = 256  # scored entries per unembedding tile (streamed over the vocabulary, see _score)


def tile_rows(E: int, limit: int | None = None) -> int:
    """Largest divisor C of E with C <= limit (default TILE_ROWS, read at call time)."""
    limit = TILE_ROWS if limit is None else limit
    return next(C for C in range(min(E, limit), 0, -1) if E % C == 0)


def entry_count(n: int, R: int, T: int) -> int:
    """Static size E of the entry arrays: R*T (at most one entry per token, unless members of a tree
    score one prefix position for different targets), else n rounded up to whole tiles."""
    return R * T if n <= R * T else -(-n // TILE_ROWS) * TILE_ROWS


def tree_mask(segments_RT: jax.Array, branches_RT: jax.Array) -> jax.Array:
    """[R, T, T] bool: same non-zero segment, key not after the query, and the key in the group's
    shared prefix (branch 0) or in the query's own branch (packing.layout)."""
    # the decoder's own causal + segment rule; without a window positions do not enter it (the
    # decoder applies the sliding window by position on top of this mask)
    no_pos = jnp.zeros_like(segments_RT)
    mask = attention_mask(
        jnp.arange(segments_RT.shape[1]), no_pos, segments_RT, no_pos, segments_RT, window=None
    )
    return mask & ((branches_RT[:, None, :] == 0) | (branches_RT[:, None, :] == branches_RT[:, :, None]))


def _score(
    graphdef,
    state,
    tokens_RT,
    positions_RT,
    segments_RT,
    branches_RT,
    slots_E,
    targets_E,
    n_entries,
    tree: bool,
):
    """log p(target) and is-greedy [E] float32 / bool of the hidden state at each flat slot r*T + t;
    only the first `n_entries` are computed, the rest are 0. `tree`: apply the prefix-tree mask."""
    model = nnx.merge(graphdef, state)
    R, T = tokens_RT.shape
    mask = tree_mask(segments_RT, branches_RT) if tree else None
    hidden = model.hidden(tokens_RT, positions_RT, segments_RT, attn_mask=mask).reshape(R * T, -1)
    E = slots_E.shape[0]
    C = tile_rows(E)
    hidden_NCD = hidden[slots_E].reshape(E // C, C, -1)
    targets_NC = targets_E.reshape(E // C, C)
    starts_N = jnp.arange(E // C, dtype=jnp.int32) * C
    unembed = model.unembed_matrix()

    def compute(h_CD, t_C):
        return streamed_token_logprobs(h_CD, unembed, t_C, final_softcap=model.config.final_logit_softcap)

    def skip(h_CD, t_C):
        return jnp.zeros((C,), jnp.float32), jnp.zeros((C,), bool)

    def tile(args):
        h_CD, t_C, start = args
        return jax.lax.cond(start < n_entries, compute, skip, h_CD, t_C)

    picked, greedy = jax.lax.map(tile, (hidden_NCD, targets_NC, starts_N))
    return picked.reshape(E), greedy.reshape(E)


_score_jit = jax.jit(_score, static_argnames=("graphdef", "tree"))


@functools.lru_cache(maxsize=4)
def _score_on_mesh(mesh) -> jax.stages.Wrapped:
    return jit_on_mesh(_score, mesh, static_argnames=("graphdef", "tree"))


def scorer(mesh=None) -> jax.stages.Wrapped:
    """The jitted `_score` for `mesh`: traced under it, so the decoder's activation constraints split
    the rows as the batch is (one jitted function per mesh); None: `_score_jit` (read at call time)."""
    return _score_jit if mesh is None else _score_on_mesh(mesh)


class JaxLM:
    """Wraps an `align.model.Decoder` and an `align.data.Tokenizer`.

    Args:
      batch_size: rows per forward pass (scoring and generation); a scoring row holds several
        requests when they fit in `pack_tokens`.
      add_bos: prepend BOS when encoding (lm-eval does for every Gemma model).
      max_length: scoring context window (default: the model config's max_seq_len).
      pack_tokens: row length that shorter requests are packed into (0: one request per row).
      share_prefixes: score requests that start with the same tokens as one prefix tree
        (`safety_evals.lm.packing`); the log-probs are the same either way.
      mesh: shard the weights over it by align's rules table and split every batch's rows over its
        data axes (`align.model.sharding.make_mesh`); None: the model stays where it is (one device).
        The mesh may span several processes (align.distributed): each builds every batch (the eval
        items are small, and packing plans all of them), places only the rows its devices hold
        (`shard_rows`), and reads the scores and generations back with `host_array`, so every process
        calls the adapter with the same requests in the same order and gets the same results.
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
        pack_tokens: int = PACK_TOKENS,
        share_prefixes: bool = True,
        mesh=None,
    ):
        self._graphdef, self._state = nnx.split(model)
        if mesh is not None:  # a sharded copy: the caller's model stays where it was
            self._state = shard_state(self._state, mesh)
            model = nnx.merge(self._graphdef, self._state)
        self.mesh = mesh
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.pack_tokens, self.share_prefixes = pack_tokens, share_prefixes
        self.batch_size, self.add_bos = batch_size, add_bos
        self.max_length = max_length or int(model.config.max_seq_len)
        self.cache_dtype = cache_dtype
        self.prefix_id = tokenizer.bos_id

    def _rows(self, *arrays):
        """[R, ...] arrays with their rows split over the mesh's data axes (as given without a mesh)."""
        return arrays if self.mesh is None else shard_rows(arrays, self.mesh)

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
    def plan(self, requests: Sequence[tuple[list[int], list[int]]]) -> list[packing.Batch]:
        """The forward passes `loglikelihood_tokens(requests)` makes (benchmarks compile them first)."""
        return self._plan([self.window(r) for r in requests])

    def _plan(self, windows: Sequence[packing.Window]) -> list[packing.Batch]:
        return packing.plan(
            [w for w, _, _ in windows], self.batch_size, self.pack_tokens, share=self.share_prefixes
        )

    def window(self, request: tuple[list[int], list[int]]) -> packing.Window:
        """(tokens the model reads, positions scored, last target) of one (context, continuation) ids."""
        ctx, cont = request
        toks, n = scoring_window(ctx, cont, self.max_length)
        return toks, n, cont[-1] if n else self.tokenizer.pad_id

    def score_batch(self, batch: packing.Batch, windows: Sequence[packing.Window]) -> list[TokenScores]:
        """Scores of the requests of `batch`, in `batch.members()` order."""
        lay = packing.layout(batch, windows, self.tokenizer.pad_id)
        n = len(lay.entry_slots)
        E = entry_count(n, batch.R, batch.T)
        slots = np.zeros(E, np.int32)
        targets = np.full(E, self.tokenizer.pad_id, np.int32)
        slots[:n], targets[:n] = lay.entry_slots, lay.entry_targets
        scores = scorer(self.mesh)(
            self._graphdef,
            self._state,
            *self._rows(lay.tokens, lay.positions, lay.segments, lay.branches),
            slots,
            targets,
            np.int32(n),
            tree=lay.is_tree,
        )
        picked, greedy = host_array(scores[0]), host_array(scores[1])  # on several hosts: collectives
        return [
            TokenScores(tuple(float(picked[e]) for e in mine), bool(all(greedy[e] for e in mine)))
            for mine in lay.request_entries
        ]

    def loglikelihood_tokens(self, requests: Sequence[tuple[list[int], list[int]]]) -> list[TokenScores]:
        windows = [self.window(r) for r in requests]
        out: list[TokenScores | None] = [None] * len(windows)
        for batch in self._plan(windows):
            for i, s in zip(batch.members(), self.score_batch(batch, windows)):
                out[i] = s
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
        from align.sampling.text import pad_prompts

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
        root = jax.random.PRNGKey(seed)
        # One key per (prompt index, sample index), not per batch: a prompt's samples then depend on
        # neither batch_size nor the prompts batched with it (the sampler draws each row from its key).
        prompt_idx = np.repeat(np.arange(len(prompts)), num_samples)
        sample_idx = np.tile(np.arange(num_samples), len(prompts))
        row_key = jax.vmap(lambda i, k: jax.random.fold_in(jax.random.fold_in(root, i), k))
        for b, chunk in enumerate(batched(rows, self.batch_size)):
            tokens, lengths = pad_prompts(
                [ids for _, ids in chunk], self.tokenizer.pad_id, rows=self.batch_size
            )
            # pad_prompts' filler rows reuse the last real row's key: their samples are dropped
            take = np.minimum(np.arange(b * self.batch_size, (b + 1) * self.batch_size), len(rows) - 1)
            keys = row_key(prompt_idx[take], sample_idx[take])
            tokens, lengths, keys = self._rows(tokens, lengths, keys)
            with mesh_scope(self.mesh):  # decoding traces the decoder's activation constraints on the mesh
                res = generate(self.model, tokens, lengths, config, keys, cache_dtype=self.cache_dtype)
            gen, n = host_array(res.tokens), host_array(res.lengths)  # rows on every host: collectives
            for row in range(len(chunk)):
                ids = [int(t) for t in gen[row, : n[row]] if int(t) not in config.stop_ids]
                texts.append(truncate_at_stop(self.tokenizer.decode(ids), stop))
        return [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]
