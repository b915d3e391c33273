"""Fixed-shape batches: the target/mask shift, padding, buckets, first-fit packing and pair batches."""

import collections

import numpy as np
import pytest

from align.data.batching import (
    bucket_length,
    first_fit,
    next_token_targets,
    pack_batch,
    pad_batch,
    preference_batch,
)
from align.data.formats import PreferenceExample
from align.data.preference import preference_pair
from align.data.sequences import Tokenized

PAD = 0


def doc(tokens, mask):
    return Tokenized(np.asarray(tokens, np.int32), np.asarray(mask, bool))


def test_targets_shift_within_documents_only():
    tokens = np.array([[10, 11, 12, 20, 21, 0]])
    segment_ids = np.array([[1, 1, 1, 2, 2, 0]])
    response = np.array([[0, 1, 1, 0, 1, 0]])
    targets, loss_mask = next_token_targets(tokens, segment_ids, response, pad_id=PAD)
    assert targets.tolist() == [[11, 12, PAD, 21, PAD, PAD]]
    assert loss_mask.tolist() == [[1, 1, 0, 1, 0, 0]]
    assert loss_mask.dtype == np.float32


def test_pad_batch_hand_written():
    batch = pad_batch([doc([2, 7, 8], [0, 1, 1]), doc([2, 9], [0, 1])], 4, rows=3)
    assert batch["tokens"].tolist() == [[2, 7, 8, 0], [2, 9, 0, 0], [0, 0, 0, 0]]
    assert batch["positions"].tolist() == [[0, 1, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert batch["targets"].tolist() == [[7, 8, 0, 0], [9, 0, 0, 0], [0, 0, 0, 0]]
    assert batch["loss_mask"].tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert {k: v.dtype for k, v in batch.items()} == {
        "tokens": np.int32,
        "positions": np.int32,
        "segment_ids": np.int32,
        "targets": np.int32,
        "loss_mask": np.float32,
    }
    with pytest.raises(ValueError, match="more than length=2"):
        pad_batch([doc([2, 7, 8], [0, 1, 1])], 2)


def test_bucket_length():
    assert [bucket_length(n, (8, 16, 32)) for n in (1, 8, 9, 32)] == [8, 8, 16, 32]
    with pytest.raises(ValueError, match="largest bucket 32"):
        bucket_length(33, (8, 16, 32))


def test_first_fit_hand_written():
    assert first_fit([5, 3, 4, 2, 6], 8) == [[0, 1], [2, 3], [4]]
    assert first_fit([2, 7, 1, 6], 8) == [[0, 2], [1], [3]]  # 1 goes back into row 0
    with pytest.raises(ValueError, match="more than the row length"):
        first_fit([9], 8)


def test_packed_row_boundaries():
    batch = pack_batch([doc([2, 7, 8], [0, 1, 1]), doc([2, 9], [0, 1])], 6)
    assert batch["tokens"].tolist() == [[2, 7, 8, 2, 9, 0]]
    assert batch["positions"].tolist() == [[0, 1, 2, 0, 1, 0]]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 2, 2, 0]]
    # No target crosses from document 1 into document 2 (8 -> 2 would be a cross-document target).
    assert batch["targets"].tolist() == [[7, 8, 0, 9, 0, 0]]
    assert batch["loss_mask"].tolist() == [[1, 1, 0, 1, 0, 0]]
    with pytest.raises(ValueError, match="more than 1"):
        pack_batch([doc([2, 7, 8], [0, 1, 1])] * 3, 6, rows=1)


def _per_document(batch):
    """{(row, segment) -> sorted (position, token, target, mask) tuples} of a batch."""
    out = collections.defaultdict(list)
    for b, t in zip(*np.nonzero(batch["segment_ids"]), strict=True):
        key = (
            batch["positions"][b, t],
            batch["tokens"][b, t],
            batch["targets"][b, t],
            batch["loss_mask"][b, t],
        )
        out[(b, batch["segment_ids"][b, t])].append(tuple(int(x) for x in key))
    return [sorted(v) for v in out.values()]


def test_packed_equals_unpacked_per_document():
    rng = np.random.default_rng(0)
    docs = []
    for _ in range(12):
        n = int(rng.integers(2, 15))
        docs.append(doc(rng.integers(3, 50, n), rng.random(n) < 0.6))
    padded = pad_batch(docs, 16)
    packed = pack_batch(docs, 32)
    assert packed["tokens"].shape[0] < len(docs)  # packing did merge documents
    assert sorted(_per_document(padded)) == sorted(_per_document(packed))
    assert padded["loss_mask"].sum() == packed["loss_mask"].sum()


def test_preference_batch_has_a_pair_axis(tok):
    pairs = [preference_pair(PreferenceExample("Q", " yes", " no"), tok)]
    batch = preference_batch(pairs, 8, rows=2)
    assert batch["tokens"].shape == (2, 2, 8)  # [B, P, T]
    np.testing.assert_array_equal(batch["tokens"][0, :, :7], pairs[0].tokens)
    assert batch["segment_ids"][0].sum(axis=-1).tolist() == [7, 6] and not batch["segment_ids"][1].any()
    # The loss covers every response token as a target: " yes<eos>" (5 tokens) and " no<eos>" (4 tokens).
    assert batch["loss_mask"][0].sum(axis=-1).tolist() == [5.0, 4.0]
    assert batch["targets"][0, 0, :6].tolist() == pairs[0].tokens[0, 1:7].tolist()
