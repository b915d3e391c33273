"""Word-level overlap for the attribution suite's copy check: ROUGE's tokenizer and the longest
common subsequence. Pure functions of two strings, so a copy label can be re-derived by hand."""

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
