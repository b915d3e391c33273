"""Agreement of a judge with human labels: accuracy, balanced accuracy, Cohen's kappa, with 95% CIs.

    accuracy          = mean [judge == human]                         (Wilson interval)
    balanced accuracy = mean over the human classes c of recall_c    (percentile bootstrap)
    kappa             = (p_o - p_e) / (1 - p_e),  p_e = sum_c p_human(c) p_judge(c)   (Cohen 1960; bootstrap)

The bootstrap resamples rows and recomputes the statistic (safety_evals.bootstrap), never
combining the intervals of its parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from align.intervals import wilson_ci
from safety_evals.bootstrap import statistic_ci
from safety_evals.metrics import balanced_accuracy

__all__ = ["agreement", "balanced_accuracy", "cohen_kappa", "majority"]


def cohen_kappa(human: np.ndarray, judged: np.ndarray) -> float | None:
    """(p_o - p_e) / (1 - p_e): observed agreement beyond chance agreement p_e = sum_c P_h(c) P_j(c).
    None when it is undefined (no rows, or p_e = 1: both raters constant on the same class)."""
    if human.size == 0:
        return None
    classes = np.union1d(human, judged)
    p_o = float(np.mean(human == judged))
    p_e = float(sum(np.mean(human == c) * np.mean(judged == c) for c in classes))
    return None if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def agreement(human: Sequence[str], judged: Sequence[str]) -> dict:
    """{"n", "accuracy", "balanced_accuracy", "kappa"}, each figure {"value", "ci": [low, high]}."""
    h, j = np.asarray(human), np.asarray(judged)
    if h.shape != j.shape:
        raise ValueError(f"{h.size} human labels but {j.size} judged")
    k = int(np.sum(h == j))

    def fig(stat):
        return {"value": stat(np.arange(h.size)), "ci": list(statistic_ci(h.size, stat))}

    return {
        "n": int(h.size),
        "accuracy": {"value": k / h.size if h.size else None, "ci": list(wilson_ci(k, h.size))},
        "balanced_accuracy": fig(lambda i: balanced_accuracy(h[i], j[i])),
        "kappa": fig(lambda i: cohen_kappa(h[i], j[i])),
    }


def majority(train_labels: Sequence[str], n: int) -> list[str]:
    """The training set's most frequent label, n times: the baseline every judge must beat."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return [str(values[counts.argmax()])] * n
