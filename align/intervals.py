"""Wilson score interval for a proportion: the CI of a metric whose examples are all 0 or 1.

The percentile bootstrap of k successes in n collapses to [0, 0] at k = 0 (and [1, 1] at k = n):
0 toxic completions out of 20 would read as "certainly below 1%", and a gate's `bound: interval`
check would pass on it. The Wilson interval (Wilson 1927; Brown, Cai & DasGupta 2001) inverts the
score test instead, so it stays informative at the ends (0 of 20: [0, 0.161]) and keeps close to
95% coverage at small n:

    p = k / n,  centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2),  z = Phi^-1(0.975)
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # Phi^-1(0.975)


def wilson_ci(k: float, n: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """95% Wilson interval of the proportion k / n; (None, None) when n == 0."""
    if n <= 0:
        return None, None
    if not 0 <= k <= n:
        raise ValueError(f"successes k={k} outside [0, n={n}]")
    p = k / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)
