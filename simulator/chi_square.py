"""Pearson's chi-square tests on counts per category (docs/fidelity.md: the per-node placements of the simulator and
of the real control plane). Homogeneity: do two samples come from one distribution? Goodness of fit: does one
sample come from a known distribution (the simulator's tie model: each tied node equally likely)?

The statistic over the 2 x k table of counts is sum((observed - expected)^2 / expected), expected = row total *
column total / grand total, with k - 1 degrees of freedom (categories empty in both samples left out); its
p-value is the chi-square survival function, Q(dof / 2, statistic / 2), the regularised upper incomplete gamma
function, computed as in Press et al., *Numerical Recipes* (3rd ed.) section 6.2: its series below a + 1, its
continued fraction (modified Lentz) above. No SciPy: the project does not depend on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

_EPS = 1e-15
_TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class ChiSquare:
    test: str  # "homogeneity" or "goodness of fit"
    statistic: float
    dof: int
    p_value: float


def _lower_series(a: float, x: float) -> float:
    """P(a, x) by its series (converges fast for x < a + 1)."""
    term = total = 1.0 / a
    n = a
    for _ in range(10_000):
        n += 1.0
        term *= x / n
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (converges fast for x > a + 1)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square distributed with ``dof`` degrees of freedom."""
    if dof <= 0:
        raise ValueError(f"degrees of freedom must be positive, not {dof}")
    if statistic <= 0:
        return 1.0
    a, x = dof / 2.0, statistic / 2.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _lower_series(a, x))
    return min(1.0, _upper_fraction(a, x))


def homogeneity(first: Mapping[str, int], second: Mapping[str, int]) -> ChiSquare:
    """Two samples of counts per category; a single non-empty category (or none) is homogeneous by definition
    (statistic 0, p 1). An empty sample against a non-empty one is not (statistic inf, p 0): one world placed
    nothing where the other placed something, which the test's expected counts cannot express."""
    categories = sorted(k for k in set(first) | set(second) if first.get(k, 0) + second.get(k, 0) > 0)
    rows = (sum(first.get(k, 0) for k in categories), sum(second.get(k, 0) for k in categories))
    grand = rows[0] + rows[1]
    if grand and 0 in rows:
        return ChiSquare("homogeneity", math.inf, max(len(categories) - 1, 0), 0.0)
    if len(categories) < 2:
        return ChiSquare("homogeneity", 0.0, max(len(categories) - 1, 0), 1.0)
    statistic = 0.0
    for k in categories:
        column = first.get(k, 0) + second.get(k, 0)
        for row, observed in zip(rows, (first.get(k, 0), second.get(k, 0)), strict=True):
            expected = row * column / grand
            statistic += (observed - expected) ** 2 / expected
    dof = len(categories) - 1
    return ChiSquare("homogeneity", statistic, dof, chi2_sf(statistic, dof))


def goodness_of_fit(observed: Mapping[str, int], expected: Mapping[str, float]) -> ChiSquare:
    """``observed`` counts against ``expected`` counts of the same total, k - 1 degrees of freedom over the
    categories expected at all; a count where none is expected makes the fit impossible (statistic inf, p 0), and a
    single expected category fits by definition (statistic 0, p 1)."""
    if sum(observed.values()) and not math.isclose(sum(observed.values()), sum(expected.values())):
        raise ValueError(f"{sum(observed.values())} observed against {sum(expected.values())} expected")
    if any(count and expected.get(k, 0.0) <= 0.0 for k, count in observed.items()):
        return ChiSquare("goodness of fit", math.inf, max(len(expected) - 1, 1), 0.0)
    categories = [k for k, e in expected.items() if e > 0.0]
    if len(categories) < 2:
        return ChiSquare("goodness of fit", 0.0, 0, 1.0)
    statistic = sum((observed.get(k, 0) - expected[k]) ** 2 / expected[k] for k in categories)
    dof = len(categories) - 1
    return ChiSquare("goodness of fit", statistic, dof, chi2_sf(statistic, dof))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly."""
    return sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(0, min(k, n) + 1))
