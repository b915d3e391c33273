"""Fixed-shape batches of numpy arrays: padding, length buckets and sequence packing.

Every batch is a dict of [B, T] arrays (B rows, T a bucket length, so jit sees few shapes):
    tokens       int32    token ids; pad_id on padding
    positions    int32    0-based position inside the token's own document (restarts at 0 for each
                          packed document); 0 on padding
    segment_ids  int32    0 = padding, 1..n = the n documents of the row; attention must never cross ids
    targets      int32    next-token targets
    loss_mask    float32  weight of each target

Target convention: targets[b, t] = tokens[b, t+1] when t+1 lies in the same document as t, else
pad_id; loss_mask[b, t] = response_mask[b, t+1] (the per-token mask of align.data.sequences) under
the same condition, else 0. So a document's last token, padding and document boundaries carry no
loss, and a packed row gives each document exactly the targets it has alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from align.data.sequences import Tokenized, TokenizedPair

Batch = dict[str, np.ndarray]
DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def bucket_length(n: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    """The smallest bucket that holds n tokens."""
    for b in sorted(buckets):
        if n <= b:
            return b
    raise ValueError(f"{n} tokens exceed the largest bucket {max(buckets)}: truncate first or add a bucket")


def next_token_targets(
    tokens: np.ndarray, segment_ids: np.ndarray, response_mask: np.ndarray, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(targets int32 [..., T], loss_mask float32 [..., T]) following the module's target convention."""
    same = (segment_ids[..., 1:] == segment_ids[..., :-1]) & (segment_ids[..., :-1] != 0)  # [..., T-1]
    targets = np.full_like(tokens, pad_id)
    targets[..., :-1] = np.where(same, tokens[..., 1:], pad_id)
    loss_mask = np.zeros(tokens.shape, np.float32)
    loss_mask[..., :-1] = same & response_mask[..., 1:].astype(bool)
    return targets, loss_mask


def layout(rows_of_docs: Sequence[Sequence[Tokenized]], rows: int, length: int, pad_id: int) -> Batch:
    """Write documents into a [rows, length] batch, each row's documents back to back."""
    tokens = np.full((rows, length), pad_id, np.int32)
    positions = np.zeros((rows, length), np.int32)
    segment_ids = np.zeros((rows, length), np.int32)
    response = np.zeros((rows, length), bool)
    for b, docs in enumerate(rows_of_docs):
        col = 0
        for seg, doc in enumerate(docs, 1):
            n = len(doc)
            if col + n > length:
                raise ValueError(f"row {b}: documents need {col + n} tokens, more than length={length}")
            tokens[b, col : col + n] = doc.tokens
            positions[b, col : col + n] = np.arange(n)
            segment_ids[b, col : col + n] = seg
            response[b, col : col + n] = doc.loss_mask
            col += n
    targets, loss_mask = next_token_targets(tokens, segment_ids, response, pad_id)
    return {
        "tokens": tokens,
        "positions": positions,
        "segment_ids": segment_ids,
        "targets": targets,
        "loss_mask": loss_mask,
    }


def pad_batch(seqs: Sequence[Tokenized], length: int, *, rows: int | None = None, pad_id: int = 0) -> Batch:
    """One document per row, right-padded to `length`; rows past len(seqs) are all padding."""
    rows = len(seqs) if rows is None else rows
    if len(seqs) > rows:
        raise ValueError(f"{len(seqs)} sequences do not fit in {rows} rows")
    return layout([[s] for s in seqs], rows, length, pad_id)


class RowPacker:
    """Greedy first-fit of documents into rows of `length` tokens (at most `rows` rows when given)."""

    def __init__(self, length: int, rows: int | None = None):
        self.length, self.max_rows = length, rows
        self.rows: list[list[int]] = []  # document indices per row
        self.free: list[int] = []  # tokens left per row

    def add(self, index: int, n: int) -> bool:
        """Place document `index` of n tokens in the first row with room; False when it fits nowhere."""
        if n > self.length:
            raise ValueError(f"document {index} has {n} tokens, more than the row length {self.length}")
        for r, free in enumerate(self.free):
            if n <= free:
                self.rows[r].append(index)
                self.free[r] -= n
                return True
        if self.max_rows is not None and len(self.rows) >= self.max_rows:
            return False
        self.rows.append([index])
        self.free.append(self.length - n)
        return True


def first_fit(lengths: Sequence[int], length: int) -> list[list[int]]:
    """Rows of document indices, packing the documents in order into as many rows as needed."""
    packer = RowPacker(length)
    for i, n in enumerate(lengths):
        packer.add(i, n)
    return packer.rows


def pack_batch(seqs: Sequence[Tokenized], length: int, *, rows: int | None = None, pad_id: int = 0) -> Batch:
    """Pack documents first-fit into rows of `length`; raises if they need more than `rows` rows."""
    packed = first_fit([len(s) for s in seqs], length)
    rows = len(packed) if rows is None else rows
    if len(packed) > rows:
        raise ValueError(
            f"{len(seqs)} documents need {len(packed)} rows of {length} tokens, more than {rows}"
        )
    return layout([[seqs[i] for i in row] for row in packed], rows, length, pad_id)


def preference_batch(
    pairs: Sequence[TokenizedPair], length: int, *, rows: int | None = None, pad_id: int = 0
) -> Batch:
    """Pairs into [B, P, T] arrays (same keys as a batch); rows past len(pairs) are padding."""
    rows = len(pairs) if rows is None else rows
    if len(pairs) > rows:
        raise ValueError(f"{len(pairs)} pairs do not fit in {rows} rows")
    docs = [[pair.row(p)] for pair in pairs for p in range(pair.tokens.shape[0])]
    flat = layout(docs, rows * 2, length, pad_id)  # [B*P, T]
    return {k: v.reshape(rows, 2, length) for k, v in flat.items()}  # [B, P, T]
