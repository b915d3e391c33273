"""Host-side layout of scoring requests for `JaxLM`: prefix groups, packed rows, passes, arrays.

A request's *window* is the token list the model reads (`lm.scoring_window`): position t predicts
token t+1, the last position predicts the request's final target, and its last n positions are
scored.

1. Groups (`share_prefixes`). Windows that start with the same tokens (a multiple-choice context
   and its answers, CrowS-Pairs sentences that differ after a few words) become one prefix tree:
   the shared prefix once, then each window's own suffix. Suffix positions continue from the
   prefix and a suffix sees only the prefix and itself (`jax_lm.tree_mask`), so every log-prob is the one
   the window alone would get; a prefix position scored by several windows for the same target is
   computed once.
2. Rows (`plan`). Groups of at most `pack_tokens` tokens are packed first-fit, longest first, into
   rows of that length, each group its own segment; longer groups get a row each.
3. Passes. Up to `batch_size` rows of similar length: T = `score_bucket` of the longest row, R the
   rows rounded by `pass_rows`, so few shapes compile.
4. Arrays (`layout`): tokens, positions, segments, branches [R, T] and the scored entries
   (flat slot r*T + t, target), each request's log-probs being a list of entries.

Shape letters: R rows in a pass, T tokens per row, E scored entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

Window = tuple[Sequence[int], int, int]  # (tokens the model reads, trailing positions scored, last target)


@dataclasses.dataclass(frozen=True)
class Group:
    """Requests `members` (indices into the window list) whose windows share their first `prefix` tokens."""

    prefix: int
    members: tuple[int, ...]
    length: int  # tokens in the row: prefix + every member's suffix


def score_bucket(n: int, minimum: int = 8) -> int:
    """Smallest length >= max(n, minimum) on the ladder 8, 16, ..., 64, 80, 96, 112, 128, 160, ...
    (steps of 8, then a quarter of the power of two below): at most 8 tokens or 25% of a row is
    rounding padding, against up to 50% with powers of two, for a few more compiled shapes."""
    size = minimum
    while size < n:
        size += max(8, (1 << (size.bit_length() - 1)) // 4)
    return size


def pass_rows(n: int) -> int:
    """n rows rounded up to 1, 2, 4, 8, 12, 16, 20, ...: few compiled shapes, at most 3 filler rows."""
    return 1 << (n - 1).bit_length() if n <= 4 else -(-n // 4) * 4


def _common(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(limit, len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def share_prefixes(windows: Sequence[Sequence[int]], pack_tokens: int, min_gain: int = 2) -> list[Group]:
    """Groups of windows in lexicographic order, each sharing its longest common prefix.

    Greedy: the next window joins the current group when that saves at least `min_gain` more
    tokens (n members with prefix P save (n - 1) * P; a newcomer may shorten P) and the tree stays
    within max(pack_tokens, 2 x its first window): short windows make trees that still pack into
    rows, a long context gets room for its answers. Otherwise it starts a group. With min_gain 2
    a lone shared BOS never makes a tree.
    """
    order = sorted(range(len(windows)), key=lambda i: tuple(windows[i]))
    groups: list[list] = []  # [prefix, members, summed window lengths]
    for i in order:
        w = windows[i]
        if groups:
            P, members, total = groups[-1]
            p = _common(windows[members[0]], w, P)
            n = len(members)
            cap = max(pack_tokens, 2 * len(windows[members[0]]))
            if n * p - (n - 1) * P >= min_gain and total + len(w) - n * p <= cap:
                groups[-1] = [p, members + [i], total + len(w)]
                continue
        groups.append([len(w), [i], len(w)])
    return [Group(P, tuple(m), total - (len(m) - 1) * P) for P, m, total in groups]


@dataclasses.dataclass(frozen=True)
class Batch:
    """One forward pass: R rows of T tokens, the first len(rows) of them holding these groups."""

    rows: tuple[tuple[Group, ...], ...]
    R: int
    T: int

    def members(self) -> list[int]:
        """Request indices in the order `layout` lists their entries."""
        return [i for row in self.rows for g in row for i in g.members]


def plan(
    windows: Sequence[Sequence[int]], batch_size: int, pack_tokens: int, *, share: bool = True
) -> list[Batch]:
    """The forward passes that score these windows; every request lands in exactly one group."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if share:
        groups = share_prefixes(windows, pack_tokens)
    else:
        groups = [Group(len(w), (i,), len(w)) for i, w in enumerate(windows)]
    rows: list[list[Group]] = []
    fill: list[int] = []
    for g in sorted(groups, key=lambda g: -g.length):
        if g.length <= pack_tokens:
            r = next((r for r, used in enumerate(fill) if used + g.length <= pack_tokens), None)
            if r is not None:
                rows[r].append(g)
                fill[r] += g.length
                continue
        rows.append([g])
        fill.append(g.length)
    by_length = sorted(range(len(rows)), key=lambda r: -fill[r])
    batches = []
    for start in range(0, len(rows), batch_size):
        part = by_length[start : start + batch_size]
        R = min(batch_size, pass_rows(len(part)))
        batches.append(
            Batch(tuple(tuple(rows[r]) for r in part), R, score_bucket(max(fill[r] for r in part)))
        )
    return batches


@dataclasses.dataclass(frozen=True)
class Layout:
    """Arrays of one pass. branches: 0 for a group's shared prefix (and padding), k for the suffix of
    its k-th member. entry_slots / entry_targets [E]: the distinct scored (flat slot, target) pairs;
    request_entries: per member (Batch.members order), the entries of its scored positions in order."""

    tokens: np.ndarray
    positions: np.ndarray
    segments: np.ndarray
    branches: np.ndarray
    entry_slots: np.ndarray
    entry_targets: np.ndarray
    request_entries: list[list[int]]

    @property
    def is_tree(self) -> bool:
        return bool(self.branches.any())


def layout(batch: Batch, windows: Sequence[Window], pad: int) -> Layout:
    """The arrays of `batch` for these windows (indexed as in `plan`)."""
    R, T = batch.R, batch.T
    if len(batch.rows) > R:
        raise ValueError(f"layout: {len(batch.rows)} rows for a pass of {R}")
    tokens = np.full((R, T), pad, np.int32)
    positions = np.zeros((R, T), np.int32)
    segments = np.zeros((R, T), np.int32)
    branches = np.zeros((R, T), np.int32)
    entries: dict[tuple[int, int], int] = {}
    request_entries: list[list[int]] = []
    for r, row in enumerate(batch.rows):
        at = 0
        for seg, g in enumerate(row, start=1):
            if at + g.length > T:
                raise ValueError(f"layout: row {r} has more than T={T} tokens")
            P = g.prefix
            first = windows[g.members[0]][0]
            tokens[r, at : at + P] = first[:P]
            positions[r, at : at + P] = np.arange(P)
            segments[r, at : at + P] = seg
            suffix_at = at + P
            for k, i in enumerate(g.members, start=1):
                toks, n, last = windows[i]
                L = len(toks)
                if list(toks[:P]) != list(first[:P]):
                    raise ValueError(f"layout: request {i} does not start with its group's prefix")
                s = slice(suffix_at, suffix_at + L - P)
                tokens[r, s] = toks[P:]
                positions[r, s] = np.arange(P, L)
                segments[r, s] = seg
                branches[r, s] = k
                mine = []
                for j in range(L - n, L):
                    slot = r * T + (at + j if j < P else suffix_at + j - P)
                    target = toks[j + 1] if j + 1 < L else last
                    mine.append(entries.setdefault((slot, int(target)), len(entries)))
                request_entries.append(mine)
                suffix_at += L - P
            at += g.length
    slots = np.array([s for s, _ in entries], np.int32).reshape(-1)
    targets = np.array([t for _, t in entries], np.int32).reshape(-1)
    return Layout(tokens, positions, segments, branches, slots, targets, request_entries)
