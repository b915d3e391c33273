"""Frozen-backbone features of preference pairs for the linear probe, pooled several ways, cached.

    feats = pair_feature_sets(backbone, pairs, pools=("last", "mean"), layers=(9, 18), batch_size=8,
                              cache=FeatureCache("/tmp/cache", key="gemma3-270m float32"))
    feats  # [n, 2, F, D] float32, F = len(pools) * len(layers), ordered pool-major

For every sequence (chosen, rejected) and every layer l in `layers` (1-based: the residual stream after
block l; the last layer is read after the final norm, as ScoreModel reads it), two poolings:
  last: the hidden state at the last token (what ScoreModel's head reads),
  mean: the mean over the response tokens (the prompt, shared by both rows, left out).
`pool_index(pools, layers, p, n_layers)` for p in "last", "mean" are the features a ScoreModel (and its
export) reads with pool HEAD_POOL[p].

The feature pass is the whole cost of a probe (one forward per sequence, no backward), so pairs are
sorted by length and each batch is padded to the next multiple of `bucket` tokens (a few compiled
shapes instead of padding everything to max_length), and with a cache each pair's [2, F, D] block is
stored as one .npy named by a hash of the model key, the pooling and the pair's tokens: a second pass
over the same pairs (another head, another l2, the `align rm` run that ships the recipe) reads them.

On several processes each one reads (tokenizes, for lazily tokenized pairs) only its rows of every
batch, with or without a cache: it looks up its rows of the cache-less pass's batches, the entries
found are gathered on every process, and the pairs none found are batched again (as the cache-less
pass batches all of them) for the forward. A process writes the entries of its rows only: a rerun
with other processes or batches finds them all where every process sees one cache folder.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from align.data import TokenizedPair
from align.data.lazy import LazySequences
from align.distributed import host_array
from align.model.heads import pool_tokens
from align.npy_cache import NpyCache
from align.model.sharding import jit_on_mesh, shard_state
from align.training.feed import local_rows, rows_on_mesh

POOLS = ("last", "mean")
HEAD_POOL = {"last": "last", "mean": "response_mean"}  # feature pool -> ScoreModel.pool reading it
FEATURE_POOL = {head: feature for feature, head in HEAD_POOL.items()}  # ScoreModel.pool -> feature pool
ROWS = ("tokens", "positions", "segment_ids", "response")  # the feature forward's row arguments, in order


def pool_index(pools: Sequence[str], layers: Sequence[int], pool: str, layer: int) -> int:
    """Index along F of (pool, layer) in pair_feature_sets' output."""
    return list(pools).index(pool) * len(layers) + list(layers).index(layer)


def _pooled(backbone, tokens, positions, segment_ids, response, pools, layers):
    """[B, F, D] pooled hidden states (see the module docstring) of right-padded rows [B, T]: pooled by
    align.model.heads.pool_tokens, as a ScoreModel with pool "last" / "response_mean" pools its reward."""
    taken = dict(zip(layers, backbone.layer_states(tokens, positions, segment_ids, layers)))  # [B, T, D]
    out = [
        pool_tokens(taken[layer].astype(jnp.float32), segment_ids, response, HEAD_POOL[pool])
        for pool in pools
        for layer in layers
    ]
    return jnp.stack(out, axis=1)  # [B, F, D]


@functools.lru_cache(maxsize=4)
def _pooled_fn(graphdef, pools: tuple[str, ...], layers: tuple[int, ...], mesh=None):
    """jit: (state, *rows [B, T]) -> [B, F, D], traced under `mesh` (the decoder's constraints apply)."""
    return jit_on_mesh(lambda state, *rows: _pooled(nnx.merge(graphdef, state), *rows, pools, layers), mesh)


def weights_key(model: nnx.Module) -> str:
    """sha1 of every parameter's bytes: the cache key of a model (a path or a spec names a model whose
    weights can change under it, e.g. an SFT export rewritten by a new run)."""
    digest = hashlib.sha1()
    for path, value in sorted(nnx.to_flat_state(nnx.state(model, nnx.Param)), key=lambda kv: str(kv[0])):
        array = np.asarray(value[...] if hasattr(value, "__getitem__") else value)
        digest.update(f"{path}{array.dtype}{array.shape}".encode() + array.tobytes())
    return digest.hexdigest()


class FeatureCache:
    """One .npy per pair under `root` (align.npy_cache), named by sha1(key, pooling, tokens); `key`
    names the model."""

    def __init__(self, root: str | Path, key: str):
        self.files, self.key = NpyCache(root), key

    def digest(self, pair: TokenizedPair, pooling: str) -> str:
        digest = hashlib.sha1(f"{self.key}|{pooling}|{pair.prompt_length}|".encode())
        for p in range(pair.tokens.shape[0]):
            digest.update(np.ascontiguousarray(pair.row(p).tokens, np.int32).tobytes() + b"|")
        return digest.hexdigest()

    def path(self, pair: TokenizedPair, pooling: str) -> Path:
        return self.files.path(self.digest(pair, pooling))

    def get(self, pair: TokenizedPair, pooling: str) -> np.ndarray | None:
        return self.files.get(self.digest(pair, pooling))

    def put(self, pair: TokenizedPair, pooling: str, value: np.ndarray) -> None:
        self.files.put(self.digest(pair, pooling), value)


def _rows(pairs: Sequence[TokenizedPair], rows: int, length: int, pad_id: int) -> dict[str, np.ndarray]:
    """tokens, positions, segment_ids, response [rows * 2, length] of the pairs (chosen, rejected rows)."""
    tokens = np.full((rows * 2, length), pad_id, np.int32)
    positions = np.zeros((rows * 2, length), np.int32)
    segment_ids = np.zeros((rows * 2, length), np.int32)
    response = np.zeros((rows * 2, length), np.float32)
    for i, pair in enumerate(pairs):
        for p in range(2):
            seq, r = pair.row(p), 2 * i + p
            n = len(seq.tokens)
            tokens[r, :n], positions[r, :n], segment_ids[r, :n] = seq.tokens, np.arange(n), 1
            response[r, :n] = seq.loss_mask
    return dict(zip(ROWS, (tokens, positions, segment_ids, response)))


def process_rows(mesh, rows: int) -> slice:
    """The rows of every [rows, ...] batch this process reads, tokenizes and collates: the block its
    devices hold on a mesh (align.training.feed.local_rows, as the training batches; all of them on one
    process), every row without a mesh."""
    return slice(0, rows) if mesh is None else local_rows(mesh, rows)


def _cached(pairs, order, cache: FeatureCache, pooling: str, batch_size: int, mesh, width) -> list:
    """Every pair's cached features [2, F, D] (width = (F, D)), or None: each process looks up (so
    tokenizes) only its rows of every batch of `order` (the cache-less pass's batches), and what they
    found is gathered on every process in one collective, as the forward's features are."""
    take, starts = process_rows(mesh, batch_size), range(0, len(order), batch_size)
    found = np.zeros((2 * (take.stop - take.start), len(starts)), np.int8)  # [2 B_p, batches]
    feats = np.zeros((*found.shape, *width), np.float32)  # [2 B_p, batches, F, D]: the forward's rows
    for b, start in enumerate(starts):
        for k, i in enumerate(order[start : start + batch_size][take]):
            value = cache.get(pairs[i], pooling)
            if value is not None:
                found[2 * k : 2 * k + 2, b], feats[2 * k : 2 * k + 2, b] = 1, value
    block = rows_on_mesh({"found": found, "feats": feats}, mesh, 2 * batch_size)
    found, feats = host_array(block["found"]), host_array(block["feats"])  # [2B, batches, ...]
    out = [None] * len(pairs)
    for b, start in enumerate(starts):
        for k, i in enumerate(order[start : start + batch_size]):
            out[i] = feats[2 * k : 2 * k + 2, b] if found[2 * k, b] else None
    return out


def _columns(pairs: Sequence[TokenizedPair], i: int) -> int:
    """T of pair i, without tokenizing it when the pairs are lazily tokenized (align.data.lazy)."""
    return pairs.length(i) if isinstance(pairs, LazySequences) else pairs[i].tokens.shape[1]


def pair_feature_sets(
    backbone,
    pairs: Sequence[TokenizedPair],
    *,
    pools: Sequence[str] = ("last",),
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    bucket: int = 64,
    pad_id: int = 0,
    cache: FeatureCache | None = None,
    progress=None,
    mesh=None,
) -> np.ndarray:
    """Features [n, 2, F, D] float32 of `pairs` (see the module docstring); layers default to the last.

    mesh: the forward runs on it, weights sharded by align's rules table (a copy: `backbone` stays
    where it is) and each batch's rows split over the data axes; each process reads (and looks up in
    the cache) only the pairs its devices hold (process_rows), and the features are gathered."""
    layers = tuple(layers or (len(backbone.layers),))
    pools = tuple(pools)
    if not set(pools) <= set(POOLS):
        raise ValueError(f"pools={pools}: expected a subset of {POOLS}")
    if not all(1 <= layer <= len(backbone.layers) for layer in layers):
        raise ValueError(f"layers={layers}: expected 1..{len(backbone.layers)}")
    pooling, width = f"{pools}{layers}", (len(pools) * len(layers), backbone.config.embed_dim)
    order = sorted(range(len(pairs)), key=lambda i: _columns(pairs, i))
    out = [None] * len(pairs)
    if cache is not None and len(pairs):
        out = _cached(pairs, order, cache, pooling, batch_size, mesh, width)
    todo = [i for i in order if out[i] is None]  # the pairs to compute, in the cache-less pass's order
    if progress is not None and len(pairs) > len(todo):
        progress(len(pairs) - len(todo))
    if todo:
        graphdef, state = nnx.split(backbone)
        forward = _pooled_fn(graphdef, pools, layers, mesh)
        if mesh is not None:
            state = shard_state(state, mesh)
    take = process_rows(mesh, batch_size)  # this process's pairs of every batch (all on one process)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        length = -(-max(_columns(pairs, i) for i in chunk) // bucket) * bucket
        rows = _rows([pairs[i] for i in chunk[take]], take.stop - take.start, length, pad_id)
        rows = rows_on_mesh(rows, mesh, 2 * batch_size)  # [2B, T] each: chosen and rejected rows interleaved
        feats = host_array(forward(state, *(rows[k] for k in ROWS)))  # by name: pytrees sort dict keys
        feats = feats.reshape(batch_size, 2, *width)
        for k, i in enumerate(chunk):
            out[i] = feats[k]
        if cache is not None:  # this process's rows: the pairs it has tokenized
            for k, i in enumerate(chunk[take], start=take.start):
                cache.put(pairs[i], pooling, feats[k])
        if progress is not None:
            progress(len(chunk))
    if not out:
        return np.zeros((0, 2, *width), np.float32)
    return np.stack(out).astype(np.float32)
