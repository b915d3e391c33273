"""Prefix trees, packed rows and pass arrays for JaxLM scoring, checked by hand on tiny windows."""

import jax.numpy as jnp
import numpy as np
import pytest

from safety_evals.lm import packing
from safety_evals.lm.jax_lm import tree_mask


def test_windows_that_start_alike_share_one_prefix_and_a_lone_bos_does_not():
    windows = [[2, 8], [2, 5, 6, 9], [2, 5, 6, 7]]
    groups = packing.share_prefixes(windows, pack_tokens=128)
    assert [(g.prefix, g.members, g.length) for g in groups] == [(3, (2, 1), 5), (2, (0,), 2)]
    # a newcomer that would shrink a 4-token prefix to 2 saves 2*2 - 1*4 = 0 more tokens: new group
    windows = [[2, 5, 6, 7, 1], [2, 5, 6, 7, 3], [2, 5, 9]]
    groups = packing.share_prefixes(windows, pack_tokens=128)
    assert [(g.prefix, g.members) for g in groups] == [(4, (0, 1)), (3, (2,))]


def test_a_tree_stays_within_the_pack_length_or_twice_its_first_window():
    windows = [[2, 5, 10 + i] for i in range(10)]  # 2 shared tokens, 1 own token each
    groups = packing.share_prefixes(windows, pack_tokens=8)
    assert [g.members for g in groups] == [(0, 1, 2, 3, 4, 5), (6, 7, 8, 9)]  # 2 + 6 = 8 tokens at most
    assert [g.length for g in groups] == [8, 6]
    long = [[2] + [5] * 99 + [i] for i in range(3)]  # 101 tokens each: room for 2 x 101
    (g,) = packing.share_prefixes(long, pack_tokens=8)
    assert g.prefix == 100 and g.length == 103


def test_plan_places_every_request_once_in_packed_rows():
    rng = np.random.default_rng(0)
    windows = [list(rng.integers(3, 6, size=rng.integers(1, 40))) for _ in range(60)] + [[2] * 200]
    for share in (True, False):
        batches = packing.plan(windows, batch_size=4, pack_tokens=64, share=share)
        members = sorted(i for b in batches for i in b.members())
        assert members == list(range(len(windows)))
        for b in batches:
            assert len(b.rows) <= b.R <= 4 and b.R in (1, 2, 4)
            fills = [sum(g.length for g in row) for row in b.rows]
            assert b.T == packing.score_bucket(max(fills))
            assert all(f <= 64 or len(row) == 1 for f, row in zip(fills, b.rows))
    assert [packing.pass_rows(n) for n in (1, 2, 3, 4, 5, 8, 9, 13)] == [1, 2, 4, 4, 8, 8, 12, 16]


def test_layout_of_one_tree_by_hand():
    # windows [2, 5, 6] (scores 2 positions, last target 7) and [2, 5, 8, 9] (scores 3, last 4)
    windows = [([2, 5, 6], 2, 7), ([2, 5, 8, 9], 3, 4)]
    (batch,) = packing.plan([w for w, _, _ in windows], batch_size=2, pack_tokens=16)
    assert batch.rows == ((packing.Group(2, (0, 1), 5),),) and (batch.R, batch.T) == (1, 8)
    lay = packing.layout(batch, windows, pad=0)
    assert lay.tokens.tolist() == [[2, 5, 6, 8, 9, 0, 0, 0]]
    assert lay.positions.tolist() == [[0, 1, 2, 2, 3, 0, 0, 0]]
    assert lay.segments.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]
    assert lay.branches.tolist() == [[0, 0, 1, 2, 2, 0, 0, 0]]
    # (slot, target): slot 1 (token 5) predicts 6 for the first window and 8 for the second
    pairs = list(zip(lay.entry_slots.tolist(), lay.entry_targets.tolist()))
    assert pairs == [(1, 6), (2, 7), (1, 8), (3, 9), (4, 4)]
    assert lay.request_entries == [[0, 1], [2, 3, 4]] and lay.is_tree


def test_layout_computes_a_shared_prefix_position_once():
    windows = [([2, 5, 6], 3, 7), ([2, 5, 8], 3, 7)]  # both score BOS -> 5 at slot 0
    (batch,) = packing.plan([w for w, _, _ in windows], batch_size=1, pack_tokens=16)
    lay = packing.layout(batch, windows, pad=0)
    assert list(zip(lay.entry_slots.tolist(), lay.entry_targets.tolist())) == [
        (0, 5),
        (1, 6),
        (2, 7),
        (1, 8),
        (3, 7),
    ]
    assert lay.request_entries == [[0, 1, 2], [0, 3, 4]]


def test_packed_windows_are_segments_with_their_own_positions():
    windows = [([2, 5, 6], 1, 7), ([2, 9], 2, 4), ([], 0, 0)]
    (batch,) = packing.plan([w for w, _, _ in windows], batch_size=2, pack_tokens=16)
    lay = packing.layout(batch, windows, pad=0)
    assert lay.tokens[0, :5].tolist() == [2, 5, 6, 2, 9]
    assert lay.positions[0, :5].tolist() == [0, 1, 2, 0, 1]
    assert lay.segments[0, :5].tolist() == [1, 1, 1, 2, 2] and not lay.is_tree
    by_request = dict(zip(batch.members(), lay.request_entries))
    slots = lay.entry_slots.tolist()
    assert [slots[e] for e in by_request[0]] == [2] and [slots[e] for e in by_request[1]] == [3, 4]
    assert by_request[2] == []


def test_tree_mask_by_hand():
    segments = jnp.array([[1, 1, 1, 1, 1, 2, 0]])
    branches = jnp.array([[0, 0, 1, 2, 2, 0, 0]])
    m = np.asarray(tree_mask(segments, branches))[0].astype(int)
    assert m[2].tolist() == [1, 1, 1, 0, 0, 0, 0]  # branch 1 sees the prefix and itself
    assert m[4].tolist() == [1, 1, 0, 1, 1, 0, 0]  # branch 2 skips branch 1
    assert m[1].tolist() == [1, 1, 0, 0, 0, 0, 0]  # the prefix is causal
    assert m[5].tolist() == [0, 0, 0, 0, 0, 1, 0]  # another segment sees only itself
    assert m[6].tolist() == [0] * 7  # padding sees nothing


def test_layout_rejects_an_overfull_row():
    windows = [([2, 5, 6], 1, 7)]
    batch = packing.Batch(((packing.Group(3, (0,), 3),),), R=1, T=2)
    with pytest.raises(ValueError, match="row 0 has more than T=2"):
        packing.layout(batch, windows, pad=0)


def test_score_buckets_step_by_eight_then_by_quarter_octaves():
    got = [packing.score_bucket(n) for n in (1, 8, 9, 17, 33, 64, 65, 81, 129, 300)]
    assert got == [8, 8, 16, 24, 40, 64, 80, 96, 160, 320]
