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

from collections.abc import Iterable, Iterator, Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from align import distributed
from align.model.sharding import batch_sharding


def local_rows(mesh: Mesh, rows: int) -> slice:
    """The rows of a [rows, ...] batch this process's devices hold (every row on one process)."""
    if jax.process_count() == 1:
        return slice(0, rows)
    return distributed.process_rows(batch_sharding(mesh, 1), rows)


def to_global(batch: Mapping[str, np.ndarray], mesh: Mesh, rows: int) -> Mapping:
    """A batch of this process's rows -> a batch of global [rows, ...] arrays (unchanged on one process)."""
    if jax.process_count() == 1:
        return batch
    return {
        k: distributed.global_array(np.asarray(v), batch_sharding(mesh, np.ndim(v)), rows)
        for k, v in batch.items()
    }


def global_batches(items: Iterable[tuple[Mapping, object]], mesh: Mesh, rows: int) -> Iterator:
    """(to_global(batch), position) for every (local batch, position) of a train_loop's batch stream."""
    for batch, position in items:
        yield to_global(batch, mesh, rows), position


def global_eval_batches(batches: Iterable[Mapping], mesh: Mesh, rows: int) -> Iterator[Mapping]:
    """to_global over held-out batches (which carry no data position)."""
    for batch in batches:
        yield to_global(batch, mesh, rows)
