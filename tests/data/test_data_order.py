"""Deterministic epoch order and exact resumption of batch iterators from a saved position."""

import itertools
import json

import numpy as np
import pytest

from align.data.batching import pad_batch
from align.data.order import DataOrder, batches, packed_batches
from align.data.sequences import Tokenized


def test_permutation_is_deterministic_and_differs_per_epoch():
    order = DataOrder(10, seed=3)
    p0, p1 = order.permutation(0), order.permutation(1)
    assert sorted(p0.tolist()) == list(range(10)) and sorted(p1.tolist()) == list(range(10))
    assert p0.tolist() != p1.tolist()
    assert DataOrder(10, seed=3).permutation(1).tolist() == p1.tolist()  # a function of (seed, epoch) only
    assert DataOrder(10, seed=4).permutation(0).tolist() != p0.tolist()
    assert DataOrder(4, shuffle=False).permutation(7).tolist() == [0, 1, 2, 3]


def test_stream_crosses_epochs_with_positions():
    order = DataOrder(3, seed=0)
    got = list(order.stream(epochs=2))
    assert [i for i, _ in got] == order.permutation(0).tolist() + order.permutation(1).tolist()
    assert [(p["epoch"], p["index"]) for _, p in got] == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    # Resuming from the middle of an epoch yields exactly its rest.
    rest = list(order.stream({"epoch": 1, "index": 1}, epochs=2))
    assert [i for i, _ in rest] == order.permutation(1).tolist()[1:]


def test_positions_are_checked():
    order = DataOrder(5, seed=1)
    with pytest.raises(ValueError, match="n=4"):
        next(order.stream({"epoch": 0, "index": 0, "n": 4, "seed": 1}))
    with pytest.raises(ValueError, match="seed=2"):
        next(order.stream({"epoch": 0, "index": 0, "n": 5, "seed": 2}))
    with pytest.raises(ValueError, match="out of range"):
        next(order.stream({"epoch": 0, "index": 6}))
    assert order.check({"epoch": 2, "index": 5}) == (3, 0)  # the end of an epoch is the start of the next


def test_batches_resume_exactly_after_json_round_trip():
    data = [f"ex{i}" for i in range(7)]
    order = DataOrder(len(data), seed=11)
    full = list(itertools.islice(batches(data, order, None, 3, list), 6))
    saved = json.loads(json.dumps(full[2][1]))  # a checkpoint stores the position as plain JSON
    resumed = list(itertools.islice(batches(data, order, saved, 3, list), 3))
    assert [b for b, _ in resumed] == [b for b, _ in full[3:6]]
    assert [p for _, p in resumed] == [p for _, p in full[3:6]]
    # The stream is the epochs' permutations back to back, cut into batches of 3.
    stream = [data[i] for e in range(3) for i in order.permutation(e)]
    assert sum((b for b, _ in full), []) == stream[:18]


def test_finite_run_ends_with_a_short_batch():
    order = DataOrder(5, seed=0)
    got = list(batches(list(range(5)), order, None, 2, list, epochs=2))
    assert [len(b) for b, _ in got] == [2, 2, 2, 2, 2]
    got = list(batches(list(range(5)), order, None, 3, list, epochs=1))
    assert [len(b) for b, _ in got] == [3, 2] and got[-1][1] == {"epoch": 1, "index": 0, "n": 5, "seed": 0}
    with pytest.raises(ValueError, match="dataset has 4 examples"):
        next(batches(list(range(4)), order, None, 2, list))


def _docs(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(2, 9))
        out.append(Tokenized(np.full(length, 10 + i, np.int32), rng.random(length) < 0.5))
    return out


def test_packed_batches_resume_exactly():
    docs = _docs(9)
    order = DataOrder(len(docs), seed=5)
    full = list(itertools.islice(packed_batches(docs, order, None, rows=2, length=10), 8))
    for k in (0, 3):
        resumed = list(itertools.islice(packed_batches(docs, order, full[k][1], rows=2, length=10), 3))
        for (b1, p1), (b2, p2) in zip(resumed, full[k + 1 : k + 4], strict=True):
            assert p1 == p2
            for key in b1:
                np.testing.assert_array_equal(b1[key], b2[key])
    # Every document appears exactly once in one epoch (doc i is made of tokens 10 + i).
    seen = []
    for batch, _ in packed_batches(docs, order, None, rows=2, length=10, epochs=1):
        assert batch["tokens"].shape == (2, 10)
        for b in range(2):
            for s in range(1, batch["segment_ids"][b].max() + 1):
                seen.append(int(batch["tokens"][b][batch["segment_ids"][b] == s][0]) - 10)
    assert sorted(seen) == list(range(9))


def test_batches_with_a_fixed_shape_collate():
    docs = _docs(5)
    order = DataOrder(5, seed=0)
    got = list(batches(docs, order, None, 2, lambda b: pad_batch(b, 8, rows=2), epochs=1))
    assert [g[0]["tokens"].shape for g in got] == [(2, 8)] * 3
    assert not got[-1][0]["segment_ids"][1].any()  # the short last batch is padded with an empty row
