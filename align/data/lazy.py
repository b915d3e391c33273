"""Sequences tokenized when first read, for multi-process runs: each process tokenizes its share of a
dataset to learn every sequence's length (align.training.feed.encode_by_process), then only the
sequences of the batch rows it feeds.

    seqs = LazySequences(encode, indices=kept, lengths=lengths_of_kept, known=my_share)
    seqs[i]          # example indices[i], tokenized now unless known (then cached)
    seqs.length(i)   # its token count, without tokenizing (what packing needs)

A drop-in for the list of sequences align.data.batches / packed_batches walk: same length, same items.
Items need not be Tokenized (`size` gives what `lengths` counts, e.g. a preference pair's columns);
`keys` (optional, one int per item, e.g. a hash of a pair's prompt) let a process filter items it has
not tokenized (`select`), and `chain` joins several datasets' sequences without tokenizing them.
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
        size: Callable[[Tokenized], int] = len,
        keys: Sequence[int] | None = None,
    ):
        if len(indices) != len(lengths) or (keys is not None and len(keys) != len(indices)):
            raise ValueError(f"{len(indices)} indices but {len(lengths)} lengths (and keys)")
        self._encode, self.indices, self.lengths = encode, list(indices), list(lengths)
        self._cache = dict(known or {})  # example index -> sequence
        self.size, self.keys = size, None if keys is None else list(keys)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        j = self.indices[i]
        if j not in self._cache:
            seq = self._encode(j)
            if self.size(seq) != self.lengths[i]:  # tokenized elsewhere with another result: never mix them
                raise RuntimeError(
                    f"example {j} has {self.size(seq)} tokens here, {self.lengths[i]} where counted"
                )
            self._cache[j] = seq
        return self._cache[j]

    def length(self, i: int) -> int:
        """Tokens of sequence i, without tokenizing it."""
        return int(self.lengths[i])

    @property
    def tokenized(self) -> int:
        """How many sequences this process has tokenized (or been given)."""
        return len(self._cache)

    def select(self, positions: Sequence[int]) -> LazySequences:
        """The items at `positions`, in that order, still untokenized where they were."""
        indices = [self.indices[p] for p in positions]
        known = {j: self._cache[j] for j in indices if j in self._cache}
        keys = None if self.keys is None else [self.keys[p] for p in positions]
        return LazySequences(
            self._encode, indices, [self.lengths[p] for p in positions], known, self.size, keys
        )


def chain(parts: Sequence[LazySequences]) -> LazySequences:
    """The items of every part in order, as one LazySequences (example index: (part, its index))."""

    def encode(index):
        k, j = index
        return parts[k]._encode(j)

    indices = [(k, j) for k, part in enumerate(parts) for j in part.indices]
    known = {(k, j): v for k, part in enumerate(parts) for j, v in part._cache.items()}
    keys = None if any(p.keys is None for p in parts) else [key for p in parts for key in p.keys]
    size = parts[0].size if parts else len
    return LazySequences(encode, indices, [n for p in parts for n in p.lengths], known, size, keys)
