"""Each process's rows of a batch, in one process: the blocks the processes collate join into exactly the
batch one process builds, for padded and packed batches, at every data position."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from align import distributed
from align.data import DataOrder, batches, pad_batch, packed_batches
from align.data.lazy import LazySequences
from align.data.sequences import Tokenized, TruncationStats
from align.model.sharding import MeshConfig, batch_sharding, make_mesh
from align.training.feed import encode_by_process, local_rows, to_global

ROWS, LENGTH = 8, 16


def documents(n: int = 29) -> list[Tokenized]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 9))
        out.append(Tokenized(np.arange(3, 3 + k, dtype=np.int32) + i, np.ones(k, bool)))
    return out


def blocks(processes: int) -> list[slice]:
    per = ROWS // processes
    return [slice(p * per, (p + 1) * per) for p in range(processes)]


def padded(docs, order, position, take=None):
    rows = ROWS if take is None else take.stop - take.start
    collate = lambda b: pad_batch(b, LENGTH, rows=rows)  # noqa: E731
    return batches(docs, order, position, ROWS, collate, epochs=2, take=take)


def packed(docs, order, position, take=None):
    return packed_batches(docs, order, position, ROWS, LENGTH, epochs=2, take=take)


@pytest.mark.parametrize("make", [padded, packed], ids=["padded", "packed"])
@pytest.mark.parametrize("processes", [2, 4])
def test_process_blocks_join_into_the_single_process_batch(make, processes):
    docs, order = documents(), DataOrder(29, seed=3)
    whole = list(make(docs, order, None))
    assert len(whole) >= 3  # several batches, the last one short (29 documents over 2 epochs)
    parts = [list(make(docs, order, None, take)) for take in blocks(processes)]
    for i, (batch, position) in enumerate(whole):
        assert all(p[i][1] == position for p in parts)  # every process walks the same order
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([p[i][0][key] for p in parts]), batch[key])
    # and from a resumed position
    resumed = whole[1][1]
    again = [list(make(docs, order, resumed, take)) for take in blocks(processes)]
    for i, (batch, _) in enumerate(whole[2:]):
        np.testing.assert_array_equal(np.concatenate([p[i][0]["tokens"] for p in again]), batch["tokens"])
    assert all(len(p) == len(whole) - 2 for p in again)


def test_one_process_feeds_every_row_unchanged():
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    assert local_rows(mesh, ROWS) == slice(0, ROWS)
    assert distributed.process_rows(batch_sharding(mesh, 1), ROWS) == slice(0, ROWS)
    batch = {"tokens": np.arange(ROWS * 3).reshape(ROWS, 3)}
    assert to_global(batch, mesh, ROWS) is batch  # the jitted step places numpy batches itself


def test_host_array_reads_a_sharded_array_whole():
    mesh = make_mesh(MeshConfig(data=1, fsdp=8))
    x = jax.device_put(np.arange(64.0).reshape(8, 8), batch_sharding(mesh, 2))
    np.testing.assert_array_equal(distributed.host_array(x), np.arange(64.0).reshape(8, 8))


def counting(docs):
    """encode(i) -> docs[i], recording which examples were tokenized."""
    calls = []

    def encode(i):
        calls.append(i)
        return docs[i]

    return encode, calls


@pytest.mark.parametrize("make", [padded, packed], ids=["padded", "packed"])
def test_lazy_sequences_tokenize_only_the_rows_a_process_feeds(make):
    docs, order = documents(), DataOrder(29, seed=3)
    encode, calls = counting(docs)
    lazy = LazySequences(encode, range(29), [len(d) for d in docs])
    first, _ = next(make(lazy, order, None, slice(0, 4)))
    want, _ = next(make(docs, order, None))
    np.testing.assert_array_equal(first["tokens"], want["tokens"][:4])
    # only the documents laid out in rows 0-3, each once: about half of the batch's
    in_batch = int(want["segment_ids"].max(axis=1).sum())
    assert len(calls) == len(set(calls)) == int(first["segment_ids"].max(axis=1).sum()) < in_batch
    starts = (first["positions"] == 0) & (first["segment_ids"] > 0)
    assert set(calls) == {int(t) - 3 for t in first["tokens"][starts]}  # a document starts with 3 + index


def test_encode_by_process_on_one_process_is_the_eager_list():
    docs = documents()
    keep = lambda d: len(d) > 3  # noqa: E731
    stats = TruncationStats(examples=1)

    def encode(i):
        return (None if i == 5 else docs[i]), stats

    seqs, total = encode_by_process(len(docs), encode, keep)
    want = [d for i, d in enumerate(docs) if i != 5 and keep(d)]
    assert len(seqs) == len(want) and all(a is b for a, b in zip(seqs, want))
    assert total == TruncationStats(examples=29)


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_chunk_rows_cover_every_example_once_and_only_a_process_own_rows(processes):
    """A whole-dataset pass `ROWS` examples at a time (the teacher's top-k, DPO's reference): each
    process reads only its block of each chunk, the blocks cover every example once, in order, and a
    short last chunk may leave a process nothing."""
    from align.training.feed import Zipped, chunk_rows

    n = 29
    seen = {p: [list(r) for r in chunk_rows(n, ROWS, take)] for p, take in enumerate(blocks(processes))}
    joined = [k for c in range(-(-n // ROWS)) for p in range(processes) for k in seen[p][c]]
    assert joined == list(range(n))
    per = ROWS // processes
    assert all(k // ROWS * ROWS + p * per <= k < k // ROWS * ROWS + (p + 1) * per
               for p in seen for chunk in seen[p] for k in chunk)  # fmt: skip
    if processes == 4:
        assert seen[3][-1] == []  # examples 24-28: the last chunk's rows 6-7 are empty
    reads = []
    docs = LazySequences(lambda i: reads.append(i) or i * 10, range(n), [1] * n, {}, lambda s: 1, None)
    items = Zipped(docs, np.arange(n) + 0.5, None)
    assert items[3] == (30, 3.5, None) and len(items) == n and reads == [3]
    assert items[4:6] == [(40, 4.5, None), (50, 5.5, None)]
