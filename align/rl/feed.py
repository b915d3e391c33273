"""Rollout prompts into the mesh: each process collates only the prompts its devices' rows come from.

    layout = rollout_rows(row_sharding, batch_size=B, group=G)     # G: GRPO's group size (PPO: 1)
    prompt batches of `layout.prompts` rows (align.data.batches(..., take=layout.prompts))
    tokens, lengths = place_rollout_prompts(local_prompts, G, row_sharding, layout)   # [B * G, P], [B * G]

A rollout of B prompts sampled G times each has B * G rows, [p0 g0, p0 g1, ..., p1 g0, ...], split
over the data axes. On one process `layout` is every row and the prompts are repeated and placed as
before. On several, a numpy batch cannot be placed on devices of other hosts, so each process repeats
its prompts, keeps the rows its devices hold and contributes them as its block of one global array
(align.distributed.global_array): the rollout holds the same rows in the same order whatever the
number of processes. A prompt whose G rows straddle two processes is collated by both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Sharding

from align import distributed


@dataclasses.dataclass(frozen=True)
class RolloutRows:
    """This process's share of every rollout: prompts `prompts` of the batch, rows `rows` of the
    rollout's `total` = B * G rows."""

    prompts: slice
    rows: slice
    total: int
    group: int = 1


def rollout_rows(rows: Sharding | None, batch_size: int, group: int = 1) -> RolloutRows:
    """The layout of a B = batch_size prompt rollout sampled `group` times each, rows split by `rows`
    (None or one process: every row)."""
    total = batch_size * group
    if rows is None or jax.process_count() == 1:
        return block_layout(slice(0, total), batch_size, group)
    return block_layout(distributed.process_rows(rows, total), batch_size, group)


def block_layout(mine: slice, batch_size: int, group: int = 1) -> RolloutRows:
    """The layout of a process whose devices hold rows `mine` of the rollout."""
    return RolloutRows(slice(mine.start // group, -(-mine.stop // group)), mine, batch_size * group, group)


def local_block(prompts: Mapping, layout: RolloutRows) -> tuple[np.ndarray, np.ndarray]:
    """This process's rows (layout.rows) of the rollout's [B * G, P] tokens and [B * G] lengths, from
    its prompts (layout.prompts of the batch)."""
    tokens, lengths = (np.repeat(np.asarray(prompts[k]), layout.group, axis=0) for k in ("tokens", "lengths"))
    first = layout.prompts.start * layout.group  # the rollout row of its first prompt's first sample
    cut = slice(layout.rows.start - first, layout.rows.stop - first)
    return tokens[cut].astype(np.int32), lengths[cut].astype(np.int32)


def repeat_prompts(prompts: Mapping, group_size: int) -> tuple[jax.Array, jax.Array]:
    """([B * G, P] tokens, [B * G] lengths): each prompt G times in a row (TRL's repeat_interleave)."""
    return (
        jnp.repeat(jnp.asarray(prompts["tokens"]), group_size, axis=0),
        jnp.repeat(jnp.asarray(prompts["lengths"]), group_size, axis=0),
    )


def place_rollout_prompts(
    prompts: Mapping, group: int, rows: Sharding | None, layout: RolloutRows | None = None
) -> tuple[jax.Array, jax.Array]:
    """int32 tokens [B * G, P] and lengths [B * G] of a rollout, their rows split by `rows` (None: as
    given). layout: when several processes each pass only their `layout.prompts` (None: `prompts`
    holds the whole batch on every process)."""
    if rows is not None and layout is not None and jax.process_count() > 1:
        return tuple(distributed.global_array(x, rows, layout.total) for x in local_block(prompts, layout))
    tokens, lengths = repeat_prompts(prompts, group) if group > 1 else (prompts["tokens"], prompts["lengths"])
    tokens, lengths = jnp.asarray(tokens, jnp.int32), jnp.asarray(lengths, jnp.int32)
    if rows is None:
        return tokens, lengths
    return jax.device_put(tokens, rows), jax.device_put(lengths, rows)
