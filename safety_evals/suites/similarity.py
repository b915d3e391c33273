"""Transparent text-similarity judges: ROUGE-L F-measure and SQuAD token F1.

Both are pure functions of two strings, so a factuality label can be re-derived by hand.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

Similarity = Callable[[str, str], float]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


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


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (Lin 2004): P = LCS/|pred|, R = LCS/|ref|, F = 2PR/(P+R); 0 if either is empty."""
    p, r = rouge_tokens(prediction), rouge_tokens(reference)
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def squad_tokens(text: str) -> list[str]:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation and articles, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 over the bag of normalised tokens; 0 if either side is empty."""
    p, r = squad_tokens(prediction), squad_tokens(reference)
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def max_similarity(prediction: str, references: Sequence[str], sim: Similarity) -> float:
    """max_ref sim(prediction, ref); 0 for no references."""
    return max((sim(prediction, r) for r in references), default=0.0)
