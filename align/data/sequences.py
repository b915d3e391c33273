"""Tokenized sequences, their truncation, and the counters that make truncation visible.

Mask convention (per token, before batching): `loss_mask[t]` is True when token t is a response
token, i.e. one the model should learn to produce. Batching shifts it onto next-token targets
(align.data.batching), so a mask never has to be re-derived from text.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

TRUNCATION_POLICIES = ("keep_start", "keep_end", "drop", "error")


@dataclass(frozen=True)
class Tokenized:
    """One document: tokens int32 [T] and loss_mask bool [T] (True on response tokens)."""

    tokens: np.ndarray
    loss_mask: np.ndarray
    origin: str = ""

    def __post_init__(self):
        if self.tokens.shape != self.loss_mask.shape or self.tokens.ndim != 1:
            raise ValueError(
                f"tokens {self.tokens.shape} and loss_mask {self.loss_mask.shape} must be equal 1-D"
            )

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class TokenizedPair:
    """A preference pair with a pair axis P=2 (0 = chosen, 1 = rejected), right-padded with pad_id.

    tokens int32 [P, T], loss_mask bool [P, T] (response tokens), lengths int32 [P]; both rows share
    their first `prompt_length` tokens.
    """

    tokens: np.ndarray
    loss_mask: np.ndarray
    lengths: np.ndarray
    prompt_length: int
    origin: str = ""

    def row(self, p: int) -> Tokenized:
        n = int(self.lengths[p])
        return Tokenized(self.tokens[p, :n], self.loss_mask[p, :n], self.origin)


@dataclass
class TruncationStats:
    """Counts of what truncation did to a dataset; nothing is cut or dropped without being counted here."""

    examples: int = 0  # examples seen
    truncated: int = 0  # examples that lost tokens
    prompt_truncated: int = 0  # preference/prompt examples whose prompt was cut from the left
    response_truncated: int = 0  # preference examples whose responses were cut from the right
    dropped: int = 0  # examples removed by the "drop" policy
    tokens_removed: int = 0
    no_loss: int = 0  # examples kept with an all-zero loss mask (e.g. the response was cut away)

    def summary(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


def truncate(seq: Tokenized, max_length: int, policy: str, bos_id: int | None = None) -> Tokenized | None:
    """Cut `seq` to `max_length` tokens; None when the policy is "drop" and it is too long.

    keep_start keeps the first tokens; keep_end keeps the last ones and, when the sequence starts
    with `bos_id`, keeps that <bos> in front (Gemma is never run without it).
    """
    if policy not in TRUNCATION_POLICIES:
        raise ValueError(f"truncation policy {policy!r}: expected one of {TRUNCATION_POLICIES}")
    if len(seq) <= max_length:
        return seq
    if policy == "drop":
        return None
    if policy == "error":
        raise ValueError(f"{seq.origin or 'example'}: {len(seq)} tokens exceed max_length={max_length}")
    if policy == "keep_start":
        return Tokenized(seq.tokens[:max_length], seq.loss_mask[:max_length], seq.origin)
    keep = left_truncate(np.arange(len(seq)), max_length, keep_first=bool(seq.tokens[0] == bos_id))
    return Tokenized(seq.tokens[keep], seq.loss_mask[keep], seq.origin)


def left_truncate(ids: np.ndarray, max_length: int, keep_first: bool) -> np.ndarray:
    """The last `max_length` items of `ids`; keep_first keeps ids[0] (<bos>) before the last max_length-1."""
    if len(ids) <= max_length:
        return ids
    if not keep_first:
        return ids[len(ids) - max_length :]
    if max_length < 2:
        raise ValueError("max_length must be at least 2 to keep <bos> and one more token")
    return np.concatenate([ids[:1], ids[len(ids) - max_length + 1 :]])


def count(stats: TruncationStats, before: int, after: Tokenized | None) -> None:
    """Record one SFT-style example in `stats` (after=None: dropped)."""
    stats.examples += 1
    if after is None:
        stats.dropped += 1
        stats.tokens_removed += before
        return
    if len(after) < before:
        stats.truncated += 1
        stats.tokens_removed += before - len(after)
    if not after.loss_mask.any():
        stats.no_loss += 1
