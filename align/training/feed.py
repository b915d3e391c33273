"""Batches into the mesh: each process collates only its rows, and they are joined into global arrays.

    rows = local_rows(mesh, batch_size)               # this process's slice of every global batch
    local_batches = my_iterator(..., rows=rows)       # numpy, [rows.stop - rows.start, ...]
    for batch, position in global_batches(local_batches, mesh, batch_size): step(state, batch)

On one process `local_rows` is every row and `global_batches` passes the numpy batches through (the
jitted step places them by its in_shardings). On several, a numpy batch cannot be passed to a step
whose batch sharding spans other hosts' devices, so each process's block becomes its part of one
jax.Array (jax.make_array_from_process_local_data): the global batch is the same rows in the same
order as on one process, whatever the number of processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from align import distributed
from align.data.lazy import LazySequences
from align.data.sequences import Tokenized, TruncationStats
from align.model.sharding import batch_sharding, shard_rows


def local_rows(mesh: Mesh, rows: int) -> slice:
    """The rows of a [rows, ...] batch this process's devices hold (every row on one process)."""
    if jax.process_count() == 1:
        return slice(0, rows)
    return distributed.process_rows(batch_sharding(mesh, 1), rows)


def chunk_rows(n: int, rows: int, take: slice) -> Iterator[range]:
    """For each chunk of `rows` consecutive examples of n, the indices of those this process lays out
    (`take`, from local_rows): a pass over a whole dataset (a frozen model's targets, an evaluation)
    in which each process reads and tokenizes only its share. A last, short chunk may give a process
    no example."""
    for i in range(0, n, rows):
        yield range(min(i + take.start, n), min(i + take.stop, n))


class Zipped(Sequence):
    """(items[i], column[i] for each column) without reading the items no batch row asks for: a lazily
    tokenized dataset (LazySequences) beside per-example arrays every process holds whole (DPO's
    reference log-probs, distillation's stored teacher top-k). A column that is None gives None."""

    def __init__(self, items: Sequence, *columns: np.ndarray | None):
        self.items, self.columns = items, columns

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return (self.items[i], *(None if c is None else c[i] for c in self.columns))


def to_global(batch: Mapping[str, np.ndarray], mesh: Mesh, rows: int) -> Mapping:
    """A batch of this process's rows -> a batch of global [rows, ...] arrays (unchanged on one process)."""
    if jax.process_count() == 1:
        return batch
    return {
        k: distributed.global_array(np.asarray(v), batch_sharding(mesh, np.ndim(v)), rows)
        for k, v in batch.items()
    }


def rows_on_mesh(block: Mapping[str, np.ndarray], mesh: Mesh | None, rows: int) -> Mapping:
    """This process's `local_rows` block of a [rows, ...] batch (numpy) as global arrays whose rows are
    split over the mesh's data axes (replicated where they do not divide): for a jitted forward outside
    the training step (a frozen model's pass, a feature pass), which has no in_shardings to place a
    numpy batch by. As given without a mesh."""
    return block if mesh is None else shard_rows(to_global(block, mesh, rows), mesh)


def global_batches(items: Iterable[tuple[Mapping, object]], mesh: Mesh, rows: int) -> Iterator:
    """(to_global(batch), position) for every (local batch, position) of a train_loop's batch stream."""
    for batch, position in items:
        yield to_global(batch, mesh, rows), position


def global_eval_batches(batches: Iterable[Mapping], mesh: Mesh, rows: int) -> Iterator[Mapping]:
    """to_global over held-out batches (which carry no data position)."""
    for batch in batches:
        yield to_global(batch, mesh, rows)


def encode_by_process(
    n: int,
    encode: Callable[[int], tuple[Tokenized | None, TruncationStats]],
    keep: Callable[[Tokenized], bool],
    size: Callable[[Tokenized], int] = len,
    key: Callable[[Tokenized], int] | None = None,
) -> tuple[Sequence[Tokenized], TruncationStats]:
    """The kept sequences of examples 0..n-1 and what truncation did, tokenizing each example once over
    all processes: process p encodes examples p, p+P, ..., and the processes exchange only each
    example's length (-1: dropped or not kept) and their truncation counts. The result is a
    LazySequences that tokenizes any other sequence when a batch row of this process needs it; its
    items, order and lengths are those of the single-process list.

    encode(i) -> (sequence or None when truncation dropped it, the counts of that one example).
    size(sequence): what lengths count (len; a preference pair's columns); key(sequence): an int64
    exchanged with the lengths (e.g. a hash of a pair's prompt), the result's `keys`.
    """
    from jax.experimental import multihost_utils

    P, p = jax.process_count(), jax.process_index()
    mine, width = range(p, n, P), -(-n // P)
    known, stats = {}, TruncationStats()
    lengths, keys = np.full(width, -1, np.int64), np.zeros(width, np.int64)
    for k, i in enumerate(mine):
        seq, counts = encode(i)
        stats = _add(stats, counts)
        if seq is not None and keep(seq):
            known[i], lengths[k] = seq, size(seq)
            keys[k] = 0 if key is None else key(seq)
    counts = np.asarray(dataclasses.astuple(stats), np.int32)
    # [P, width] twice, [P, F]
    every_length, every_key, every_count = multihost_utils.process_allgather((lengths, keys, counts))
    by_example, key_of = np.full(n, -1, np.int64), np.zeros(n, np.int64)
    for q in range(P):
        by_example[q::P] = every_length[q][: len(range(q, n, P))]
        key_of[q::P] = every_key[q][: len(range(q, n, P))]
    kept = np.flatnonzero(by_example >= 0)
    total = TruncationStats(*(int(v) for v in every_count.sum(0)))
    keys_kept = None if key is None else key_of[kept].tolist()
    seqs = LazySequences(lambda i: encode(i)[0], kept, by_example[kept], known, size, keys_kept)
    return seqs, total


def _add(a: TruncationStats, b: TruncationStats) -> TruncationStats:
    return TruncationStats(*(x + y for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b))))
