"""Deterministic, resumable data order.

`DataOrder(n, seed)` gives a fixed permutation of range(n) for every epoch (a function of
(seed, epoch) only). A position is a plain JSON-able dict saved with checkpoints:

    {"epoch": e, "index": i, "n": n, "seed": s}   -> the next example is order.permutation(e)[i]

The iterators yield (batch, next_position); resuming from a saved next_position yields exactly
the batches that would have followed. Batches run across epoch boundaries, so every batch is full
until the last one of a finite run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from align.data.batching import Batch, RowPacker, layout
from align.data.sequences import Tokenized

Position = dict[str, int]


@dataclass(frozen=True)
class DataOrder:
    n: int
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self):
        if self.n <= 0:
            raise ValueError(f"DataOrder needs at least one example, got n={self.n}")

    def permutation(self, epoch: int) -> np.ndarray:
        """int64 [n]: the order of epoch `epoch`."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def start(self) -> Position:
        return {"epoch": 0, "index": 0, "n": self.n, "seed": self.seed}

    def check(self, position: Position | None) -> tuple[int, int]:
        """(epoch, index) of a saved position; refuses one saved for another dataset size or seed."""
        if position is None:
            return 0, 0
        for key in ("n", "seed"):
            if key in position and position[key] != getattr(self, key):
                raise ValueError(
                    f"position {position} was saved with {key}={position[key]}, not {getattr(self, key)}"
                )
        epoch, index = int(position["epoch"]), int(position["index"])
        if epoch < 0 or not 0 <= index <= self.n:
            raise ValueError(f"position {position} is out of range for n={self.n}")
        return (epoch + 1, 0) if index == self.n else (epoch, index)

    def stream(
        self, position: Position | None = None, epochs: int | None = None
    ) -> Iterator[tuple[int, Position]]:
        """(example index, position after it) from `position` on, until epoch `epochs` (None: forever)."""
        epoch, index = self.check(position)
        while epochs is None or epoch < epochs:
            perm = self.permutation(epoch)
            for i in range(index, self.n):
                after = (epoch, i + 1) if i + 1 < self.n else (epoch + 1, 0)
                yield int(perm[i]), {"epoch": after[0], "index": after[1], "n": self.n, "seed": self.seed}
            epoch, index = epoch + 1, 0


def batches(
    dataset: Sequence[Any],
    order: DataOrder,
    position: Position | None,
    batch_size: int,
    collate: Callable[[list[Any]], Batch],
    *,
    epochs: int | None = None,
    take: slice | None = None,
) -> Iterator[tuple[Batch, Position]]:
    """collate(batch_size examples) in `order` from `position`; a finite run's last batch may be short.

    take: the rows of each batch this process feeds (align.training.feed.local_rows): only those
    examples are read from `dataset` and collated, the batch is still `batch_size` examples long, so
    every process walks the same global order."""
    if len(dataset) != order.n:
        raise ValueError(f"dataset has {len(dataset)} examples, the order {order.n}")
    lo, hi = (0, batch_size) if take is None else (take.start, take.stop)
    items, seen, after = [], 0, position or order.start()
    for index, after in order.stream(position, epochs):
        if lo <= seen < hi:
            items.append(dataset[index])
        seen += 1
        if seen == batch_size:
            yield collate(items), after
            items, seen = [], 0
    if seen:
        yield collate(items), after


def packed_batches(
    dataset: Sequence[Tokenized],
    order: DataOrder,
    position: Position | None,
    rows: int,
    length: int,
    *,
    pad_id: int = 0,
    epochs: int | None = None,
    take: slice | None = None,
) -> Iterator[tuple[Batch, Position]]:
    """Pack documents in `order`, first-fit, into [rows, length] batches.

    A batch closes when the next document fits in none of its rows; that document opens the next
    batch, and the yielded position points at it, so a resumed run packs exactly the same rows.
    take: the rows this process lays out (as in `batches`); the packing itself is global.
    """
    if len(dataset) != order.n:
        raise ValueError(f"dataset has {len(dataset)} examples, the order {order.n}")
    take = slice(0, rows) if take is None else take

    def emit(packer: RowPacker, docs: list[int]) -> Batch:
        mine = packer.rows[take.start : take.stop]
        return layout([[dataset[docs[i]] for i in r] for r in mine], take.stop - take.start, length, pad_id)

    # Packing needs only lengths; a dataset that knows them without tokenizing (align.data.lazy) is
    # read only for the rows this process lays out.
    size = getattr(dataset, "length", lambda i: len(dataset[i]))
    packer, docs = RowPacker(length, rows), []
    before = position or order.start()
    for index, after in order.stream(position, epochs):
        n = size(index)
        if not packer.add(len(docs), n):
            yield emit(packer, docs), before
            packer, docs = RowPacker(length, rows), []
            packer.add(0, n)
        docs.append(index)
        before = after
    if docs:
        yield emit(packer, docs), before
