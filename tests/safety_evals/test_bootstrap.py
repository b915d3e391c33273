"""Percentile bootstrap: fixed seed, reference percentile computation, composite statistics."""

import numpy as np
import pytest

from safety_evals import bootstrap


def reference_ci(values, stat, n_resamples=1000, seed=0):
    """Frozen reference: draw each resample row from the same generator, take the statistic,
    then the 2.5 / 97.5 percentiles (linear interpolation)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    stats = np.array([stat(np.asarray(values)[row]) for row in idx])
    return tuple(np.percentile(stats, [2.5, 97.5]))


def test_mean_ci_matches_reference_and_is_deterministic():
    x = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=float)
    got = bootstrap.mean_ci(x)
    assert got == pytest.approx(reference_ci(x, np.mean))
    assert got == bootstrap.mean_ci(x)  # fixed seed
    assert got != bootstrap.mean_ci(x, seed=1)
    lo, hi = got
    assert lo < x.mean() < hi


def test_constant_values_give_a_degenerate_interval():
    assert bootstrap.mean_ci([0.25] * 7) == pytest.approx((0.25, 0.25))
    assert bootstrap.mean_ci([]) == (None, None)


def test_ratio_ci_resamples_pairs_together():
    num = np.array([1, 0, 1, 1, 0, 2], dtype=float)
    den = np.array([1, 1, 1, 2, 0, 2], dtype=float)
    got = bootstrap.ratio_ci(num, den)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 6, size=(1000, 6))
    s_num, s_den = num[idx].sum(1), den[idx].sum(1)
    ok = s_den != 0
    assert got == pytest.approx(tuple(np.percentile(s_num[ok] / s_den[ok], [2.5, 97.5])))


def test_statistic_ci_equals_mean_ci_for_the_mean_and_skips_undefined():
    x = np.arange(12, dtype=float)
    assert bootstrap.statistic_ci(12, lambda i: x[i].mean()) == pytest.approx(bootstrap.mean_ci(x))
    # undefined on every resample -> no interval
    assert bootstrap.statistic_ci(5, lambda i: None) == (None, None)
    assert bootstrap.statistic_ci(0, lambda i: 1.0) == (None, None)


def test_coverage_is_roughly_95_percent():
    # The interval should contain the true mean in about 95% of repeated experiments.
    rng = np.random.default_rng(123)
    hits = 0
    for trial in range(200):
        x = rng.normal(0.0, 1.0, size=60)
        lo, hi = bootstrap.mean_ci(x, n_resamples=400, seed=trial)
        hits += lo <= 0.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99
