"""simulator/chi_square.py against values from statistical tables and textbook examples."""

from __future__ import annotations

import math

import pytest

from simulator import chi_square


@pytest.mark.parametrize(
    ("statistic", "dof", "p"),
    [
        (3.841458820694124, 1, 0.05),  # the 5 % critical values (any chi-square table; scipy.stats.chi2.isf)
        (6.634896601021214, 1, 0.01),
        (11.070497693516351, 5, 0.05),
        (18.307038053275146, 10, 0.05),
        (37.56623478, 20, 0.01),
        (2.0, 2, math.exp(-1.0)),  # two degrees of freedom: exactly exp(-x / 2)
        (40.0, 2, math.exp(-20.0)),
        (0.0, 3, 1.0),
    ],
)
def test_the_survival_function_matches_the_tables(statistic: float, dof: int, p: float) -> None:
    assert chi_square.chi2_sf(statistic, dof) == pytest.approx(p, rel=1e-6, abs=1e-15)


def test_homogeneity_of_a_two_by_two_table() -> None:
    # [[10, 20], [20, 10]]: every expected count is 15, statistic 4 * 25 / 15 = 6.667, one degree of freedom
    result = chi_square.homogeneity({"a": 10, "b": 20}, {"a": 20, "b": 10})
    assert result.statistic == pytest.approx(20 / 3)
    assert result.dof == 1
    assert result.p_value == pytest.approx(0.009823, abs=1e-6)


def test_homogeneity_of_a_wider_table() -> None:
    # [[30, 10, 20], [20, 20, 20]]: expected 25, 15, 20 per row of 60; 1 + 5/3 + 0 per row; dof 2: exp(-x / 2)
    result = chi_square.homogeneity({"a": 30, "b": 10, "c": 20}, {"a": 20, "b": 20, "c": 20})
    assert result.statistic == pytest.approx(2 * (1 + 5 / 3))
    assert result.p_value == pytest.approx(math.exp(-(1 + 5 / 3)))


def test_equal_samples_and_degenerate_tables_are_homogeneous() -> None:
    same = chi_square.homogeneity({"a": 3, "b": 5, "z": 0}, {"a": 3, "b": 5})
    assert (same.statistic, same.dof, same.p_value) == (0.0, 1, 1.0)
    assert chi_square.homogeneity({"a": 4}, {"a": 9}).p_value == 1.0
    assert chi_square.homogeneity({}, {}).p_value == 1.0
    # one world placed nothing, the other something: never the same distribution
    assert chi_square.homogeneity({}, {"a": 1}).p_value == 0.0
    assert chi_square.homogeneity({"a": 5, "b": 7}, {"a": 0}).p_value == 0.0
    with pytest.raises(ValueError, match="positive"):
        chi_square.chi2_sf(1.0, 0)


def test_goodness_of_fit_against_known_expected_counts() -> None:
    # 36 picks over four nodes expected 9 each: (11-9)^2/9 + (7-9)^2/9 + 1/9 + 1/9 = 10/9 on 3 dof
    result = chi_square.goodness_of_fit({"a": 11, "b": 7, "c": 8, "d": 10}, dict.fromkeys("abcd", 9.0))
    assert (result.test, result.dof) == ("goodness of fit", 3)
    assert result.statistic == pytest.approx(10 / 9)
    assert result.p_value == pytest.approx(0.774, abs=1e-3)  # chi-square tables: 3 dof, 1.111
    # two categories: statistic (30-20)^2/20 * 2 = 10 on 1 dof, p = erfc(sqrt(5))
    two = chi_square.goodness_of_fit({"a": 30, "b": 10}, {"a": 20.0, "b": 20.0})
    assert two.p_value == pytest.approx(math.erfc(math.sqrt(5)))


def test_goodness_of_fit_refuses_counts_where_none_are_expected_and_totals_that_differ() -> None:
    outside = chi_square.goodness_of_fit({"a": 3, "z": 1}, {"a": 2.0, "b": 2.0})
    assert (outside.statistic, outside.p_value) == (math.inf, 0.0)
    assert chi_square.goodness_of_fit({"a": 5}, {"a": 5.0}).p_value == 1.0
    with pytest.raises(ValueError, match="4 observed against 5"):
        chi_square.goodness_of_fit({"a": 4}, {"a": 2.5, "b": 2.5})


def test_binomial_cdf_sums_the_exact_terms() -> None:
    assert chi_square.binomial_cdf(0, 3, 0.5) == pytest.approx(1 / 8)
    assert chi_square.binomial_cdf(1, 3, 0.5) == pytest.approx(4 / 8)
    assert chi_square.binomial_cdf(3, 3, 0.5) == pytest.approx(1.0)
    # 35 consecutive pairs, each a repeat with probability 1/4: at most one repeat
    assert chi_square.binomial_cdf(1, 35, 0.25) == pytest.approx(0.75**35 + 35 * 0.25 * 0.75**34)
