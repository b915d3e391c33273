"""Sequences tokenized when first read, for multi-process runs: each process tokenizes its share of a
dataset to learn every sequence's length (align.training.feed.encode_by_process), then only the
sequences of the batch rows it feeds.

    seqs = LazySequences(encode, indices=kept, lengths=lengths_of_kept, known=my_share)
    seqs[i]          # example indices[i], tokenized now unless known (then cached)
    seqs.length(i)   # its token count, without tokenizing (what packing needs)

A drop-in for the list of sequences align.data.batches / packed_batches walk: same length, same items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from align.data.sequences import Tokenized


class LazySequences(Sequence):
    def __init__(
        self,
        encode: Callable[[int], Tokenized],
        indices: Sequence[int],
        lengths: Sequence[int],
        known: Mapping[int, Tokenized] | None = None,
    ):
        if len(indices) != len(lengths):
            raise ValueError(f"{len(indices)} indices but {len(lengths)} lengths")
        self._encode, self.indices, self.lengths = encode, list(indices), list(lengths)
        self._cache = dict(known or {})  # example index -> sequence

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        j = self.indices[i]
        if j not in self._cache:
            seq = self._encode(j)
            if len(seq) != self.lengths[i]:  # tokenized elsewhere with another result: never mix them
                raise RuntimeError(f"example {j} has {len(seq)} tokens here, {self.lengths[i]} where counted")
            self._cache[j] = seq
        return self._cache[j]

    def length(self, i: int) -> int:
        """Tokens of sequence i, without tokenizing it."""
        return int(self.lengths[i])

    @property
    def tokenized(self) -> int:
        """How many sequences this process has tokenized (or been given)."""
        return len(self._cache)
