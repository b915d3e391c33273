"""Wilson score interval: hand-computed ends, scipy's reference, coverage, and mean_metric's choice."""

import json

import pytest
from scipy import stats

from safety_evals import bootstrap
from safety_evals.results import mean_metric
from align.intervals import wilson_ci


def test_by_hand_at_the_ends():
    # k = 0: centre = half = (z^2/2n) / (1 + z^2/n), so the upper end is z^2 / (n + z^2)
    z2 = 1.959963984540054**2
    assert wilson_ci(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_ci(20, 20) == pytest.approx((20 / (20 + z2), 1.0))
    assert wilson_ci(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)  # the figure in the module docstring
    assert wilson_ci(0, 0) == (None, None)
    with pytest.raises(ValueError, match="outside"):
        wilson_ci(3, 2)


@pytest.mark.parametrize("k, n", [(0, 5), (1, 7), (13, 40), (250, 1508), (99, 100)])
def test_matches_scipy(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_ci(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


@pytest.mark.parametrize("n, p", [(20, 0.05), (50, 0.02), (30, 0.2)])
def test_exact_coverage_beats_the_bootstrap_for_rare_events(n, p):
    # exact coverage: the binomial mass of the k whose interval holds p. At small n p the bootstrap
    # misses every k = 0 (its interval is [0, 0]); Wilson stays near the nominal 95%.
    def coverage(interval):
        return sum(stats.binom.pmf(k, n, p) for k in range(n + 1) if interval(k)[0] <= p <= interval(k)[1])

    wilson = coverage(lambda k: wilson_ci(k, n))
    boot = coverage(lambda k: bootstrap.mean_ci([1.0] * k + [0.0] * (n - k), n_resamples=400))
    assert wilson > 0.92
    assert boot < wilson and (p > 0.1 or boot < 0.65)


def test_mean_metric_uses_wilson_for_proportions_only():
    m = mean_metric([0] * 20, higher_is_better=False, scale=100.0)
    assert (m.value, m.ci_low) == (0.0, 0.0) and m.ci_high == pytest.approx(100 * wilson_ci(0, 20)[1])
    assert m.interval == "wilson" and m.to_json()["interval"] == "wilson"
    graded = mean_metric([0.0, 0.5, 1.0, 1.0], higher_is_better=True)
    assert graded.interval == "bootstrap" and "interval" not in graded.to_json()
    empty = mean_metric([], higher_is_better=True)
    assert (empty.value, empty.ci_low, empty.ci_high, empty.interval) == (None, None, None, "bootstrap")
    json.dumps(m.to_json())
