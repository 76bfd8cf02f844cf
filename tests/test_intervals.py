"""Small-sample intervals against published values, statsmodels, Fieller and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import confint_proportions_2indep

from clinval import intervals as iv

Z = 1.959963984540054


def _wilson_triple(k: int, n: int) -> tuple[float, float, float]:
    return (k / n, *iv.rate_interval(k, n))


# Newcombe (1998), Stat Med 17:873, Table II, method 10 (score intervals combined by MOVER)
NEWCOMBE_1998 = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_1998)
def test_difference_of_wilson_intervals_is_newcombes_method_10(counts, published):
    k1, n1, k2, n2 = counts
    low, high = iv.difference_interval(_wilson_triple(k1, n1), _wilson_triple(k2, n2))
    assert (low, high) == pytest.approx(published, abs=6e-5)
    assert (low, high) == pytest.approx(confint_proportions_2indep(k1, n1, k2, n2, method="newcomb"), abs=1e-10)


def test_wilson_interval_textbook_value():
    # Newcombe (1998), Stat Med 17:857: 81/263 -> 0.2553 to 0.3662
    assert iv.rate_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert iv.rate_interval(0, 10)[0] == 0.0 and iv.rate_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize(("a", "sa", "b", "sb"), [(0.8, 0.1, 0.6, 0.05), (1.2, 0.3, 0.9, 0.2), (0.3, 0.1, 0.5, 0.15)])
def test_ratio_of_wald_intervals_is_fiellers_interval(a, sa, b, sb):
    """MOVER-R with symmetric intervals equals Fieller's theorem (Donner & Zou 2012)."""
    # Fieller: the r with (a - r b)^2 <= z^2 (sa^2 + r^2 sb^2)
    qa, qb, qc = b * b - Z * Z * sb * sb, -2 * a * b, a * a - Z * Z * sa * sa
    root = math.sqrt(qb * qb - 4 * qa * qc)
    fieller = ((-qb - root) / (2 * qa), (-qb + root) / (2 * qa))
    assert iv.ratio_interval((a, a - Z * sa, a + Z * sa), (b, b - Z * sb, b + Z * sb)) == pytest.approx(fieller, rel=1e-10)


def test_ratio_of_proportions_is_close_to_the_score_interval():
    """For proportions, MOVER-R with Wilson intervals is close to Miettinen-Nurminen's score interval."""
    ours = iv.ratio_interval(_wilson_triple(56, 70), _wilson_triple(48, 80))
    theirs = confint_proportions_2indep(56, 70, 48, 80, compare="ratio", method="score")
    assert ours == pytest.approx(theirs, rel=0.01)


def test_ratio_edges():
    assert iv.ratio_interval((0.0, 0.0, 0.3), (0.4, 0.2, 0.6))[0] == 0.0
    assert iv.ratio_interval((0.1, 0.0, 0.3), (0.05, 0.0, 0.2))[1] == math.inf  # the reference may be 0
    with pytest.raises(ValueError, match="lower <= value <= upper"):
        iv.ratio_interval((0.5, 0.6, 0.7), (0.4, 0.2, 0.6))


def _hanley_mcneil(theta: float, m: int, n: int) -> float:
    """Hanley & McNeil (1982) variance with Q1, Q2, both sizes replaced by N* + 1 (Newcombe 2006)."""
    star = (m + n) / 2 - 1
    q1, q2 = theta / (2 - theta), 2 * theta * theta / (1 + theta)
    return (theta * (1 - theta) + star * (q1 - theta**2) + star * (q2 - theta**2)) / (m * n)


@pytest.mark.parametrize(("auc", "m", "n"), [(0.72, 10, 30), (1.0, 5, 30), (0.5, 1, 1), (0.9, 40, 400), (0.0, 3, 3)])
def test_auroc_interval_solves_newcombes_score_equation(auc, m, n):
    low, high = iv.auroc_interval(auc, n_events=m, n_non_events=n)
    assert 0 <= low <= auc <= high <= 1 and low < high  # never a point, even at 0 or 1
    for limit in (low, high):
        if 0 < limit < 1:
            assert (auc - limit) ** 2 == pytest.approx(Z * Z * _hanley_mcneil(limit, m, n), rel=1e-8)


def test_auroc_interval_covers_in_groups_of_40():
    """10 events and 30 non-events, scores binormal with known AUROC Phi(1/sqrt(2)) = 0.760."""
    from scipy import stats

    truth = float(stats.norm.cdf(1 / math.sqrt(2)))
    rng = np.random.default_rng(0)
    covered = 0
    reps = 600
    for _ in range(reps):
        pos, neg = rng.normal(1, 1, 10), rng.normal(0, 1, 30)
        auc = roc_auc_score(np.r_[np.ones(10), np.zeros(30)], np.r_[pos, neg])
        low, high = iv.auroc_interval(auc, n_events=10, n_non_events=30)
        covered += low <= truth <= high
    # 95% nominal; 600 replicates give a binomial SD of 0.9 points
    assert 0.93 <= covered / reps <= 0.985


def test_largest_gap_interval():
    # one gap clearly away from 0, one containing 0
    assert iv.largest_gap_interval([(0.2, 0.1, 0.3), (-0.05, -0.15, 0.05)]) == (0.1, 0.3)
    assert iv.largest_gap_interval([(0.0, -0.1, 0.1), (-0.3, -0.4, -0.2)]) == pytest.approx((0.2, 0.4))
    assert iv.largest_gap_interval([(0.0, -0.1, 0.1)]) == (0.0, 0.1)


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda: iv.rate_interval(3, 2), "count must be"),
    (lambda: iv.rate_interval(1, 0), "total must be"),
    (lambda: iv.rate_interval(1, 2, confidence=95), "confidence"),
    (lambda: iv.auroc_interval(1.2, n_events=3, n_non_events=3), "auroc must lie"),
    (lambda: iv.auroc_interval(0.7, n_events=0, n_non_events=3), "positive integers"),
])
def test_bad_input_is_named(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
