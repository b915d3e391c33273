"""Word-level overlap: ROUGE's tokenizer, the longest common subsequence, and the copy check that the
attribution suite applies to answers and BEGIN training applies to its targets. Pure functions of
two strings, so a copy label can be re-derived by hand."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenizer (no stemming): lowercase, split on non-alphanumerics."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len a * len b) dynamic programme)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


COPY_SHARE = 0.9


def is_copy(answer: str, passage: str) -> bool:
    """The answer reproduces, in order, >= COPY_SHARE of the passage's tokens (LCS over lowercased
    word tokens / passage length)."""
    p = rouge_tokens(passage)
    return bool(p) and lcs_length(rouge_tokens(answer), p) >= COPY_SHARE * len(p)
