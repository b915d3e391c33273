"""Percentile bootstrap confidence intervals over examples.

Every CI in a results document comes from here, except a proportion's (align.intervals):
1000 resamples of the examples with replacement, a fixed seed, and the 2.5 / 97.5 percentiles of
the resampled statistic (Efron & Tibshirani 1993, ch. 13). Composite metrics (ICAT, kappa, BBQ bias
scores) are recomputed from the resampled examples, never combined from the CIs of their parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95

Interval = tuple[float | None, float | None]


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[R, n] int indices, each row a resample of range(n) with replacement."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n))


def _percentiles(stats: np.ndarray, level: float) -> Interval:
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None, None
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(stats, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """CI of mean(values); (None, None) when there are no values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None, None
    idx = resample_indices(x.size, n_resamples, seed)
    return _percentiles(x[idx].mean(axis=1), level)


def ratio_ci(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """CI of sum(numerator) / sum(denominator), resampling the (num, den) pairs together.

    Resamples whose denominator sums to 0 are undefined and left out of the percentiles."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape:
        raise ValueError(f"numerator {num.shape} and denominator {den.shape} differ in shape")
    if num.size == 0:
        return None, None
    idx = resample_indices(num.size, n_resamples, seed)
    top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = np.where(bottom != 0, top / np.where(bottom != 0, bottom, 1.0), np.nan)
    return _percentiles(stats, level)


def statistic_ci(
    n: int,
    statistic: Callable[[np.ndarray], float | None],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """CI of any statistic of n examples: `statistic(idx)` recomputes it from the examples at
    `idx` (an int array of length n, repeats allowed). A None/NaN statistic (undefined on that
    resample) is left out of the percentiles."""
    if n == 0:
        return None, None
    idx = resample_indices(n, n_resamples, seed)
    stats = np.array([np.nan if (s := statistic(row)) is None else float(s) for row in idx], dtype=np.float64)
    return _percentiles(stats, level)
