"""Small-sample confidence intervals that cannot collapse, and gaps between two groups.

A patient group of 40 has about 10 events. A percentile bootstrap of its sensitivity
collapses to [1, 1] whenever the group's sample sensitivity is 1 (11% of periods when the
truth is 0.8), and a gap to a large reference group then looks certain. The intervals
here are score-type: they are never a single point, they stay inside the metric's range
and they cover at the stated level at such sizes (measured in ``bench/fairness_validity.py``).

Methods
-------
Rates (sensitivity, false-positive rate, PPV, prevalence, selection rate)
    Wilson score interval (Wilson 1927), ``statsmodels.stats.proportion.proportion_confint``.
AUROC
    Score-type interval of Newcombe (2006, *Stat Med* 25:559, method 5): the values
    ``theta`` with ``(auc - theta)^2 <= z^2 V(theta)``, where ``V`` is Hanley & McNeil's
    (1982) variance with both sample sizes replaced by ``N* = (m + n) / 2 - 1``. At
    ``auc = 1`` the interval is ``[L, 1]`` with ``L < 1``.
Difference of two independent estimates
    MOVER (method of variance estimates recovery; Zou & Donner 2008, *Stat Med* 27:1693):
    ``d -/+ sqrt((t1 - l1)^2 + (u2 - t2)^2)`` and ``sqrt((u1 - t1)^2 + (t2 - l2)^2)``.
    With Wilson intervals this is Newcombe's (1998, *Stat Med* 17:873) method 10 for a
    difference of proportions; with symmetric Wald intervals it is the Wald interval of
    the difference.
Ratio of two independent positive estimates
    MOVER-R (Donner & Zou 2012, *Stat Methods Med Res* 21:347); with symmetric Wald
    intervals it equals Fieller's interval. Unbounded above when the reference's
    interval reaches 0.
Largest absolute gap of two metrics (equalized-odds difference)
    ``[max(lower |d_k|), max(upper |d_k|)]`` over the metrics' difference intervals, each
    at level ``1 - alpha / 2`` (Bonferroni), so the interval covers at least
    ``1 - alpha`` and a flag "lower bound above the tolerance" is wrong at most ``alpha``
    of the time.

Public API
----------
``rate_interval(count, total, *, confidence=0.95)`` -> (lower, upper)
``auroc_interval(auroc, *, n_events, n_non_events, confidence=0.95)`` -> (lower, upper)
``difference_interval(a, b)`` -> (lower, upper)
``ratio_interval(a, b)`` -> (lower, upper)
``largest_gap_interval(differences)`` -> (lower, upper)
where ``a`` and ``b`` are ``(value, lower, upper)`` triples of independent estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.proportion import proportion_confint

from clinval.errors import InputError

__all__ = [
    "auroc_interval",
    "difference_interval",
    "largest_gap_interval",
    "rate_interval",
    "ratio_interval",
]

ERR_COUNT = "count must be an integer between 0 and total ({total}), got {count!r}"
ERR_TOTAL = "total must be a positive integer, got {total!r}"
ERR_CONFIDENCE = "confidence must be strictly between 0 and 1, got {confidence!r}"
ERR_AUROC = "auroc must lie in [0, 1], got {auroc!r}"
ERR_CLASS_SIZES = "n_events and n_non_events must be positive integers, got {m!r} and {n!r}"
ERR_TRIPLE = "each estimate must be (value, lower, upper) with lower <= value <= upper, got {triple!r}"

Triple = tuple[float, float, float]


def _z(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise InputError(ERR_CONFIDENCE.format(confidence=confidence))
    return float(stats.norm.ppf(0.5 + confidence / 2))


def rate_interval(count: int, total: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``count / total`` (a proportion, 0-1).

    Parameters
    ----------
    count, total : int
        Events and trials, ``0 <= count <= total``, ``total >= 1``.
    confidence : float
        Two-sided level.
    """
    _z(confidence)
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 1:
        raise ValueError(ERR_TOTAL.format(total=total))
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= total:
        raise ValueError(ERR_COUNT.format(count=count, total=total))
    low, high = proportion_confint(int(count), int(total), alpha=1 - confidence, method="wilson")
    # rounding leaves 1 - 1e-16 (or -1e-17) where the interval reaches the edge exactly
    low = 0.0 if count == 0 else max(0.0, float(low))
    high = 1.0 if count == total else min(1.0, float(high))
    return low, high


def _hanley_mcneil_variance(theta: float, star: float, mn: float) -> float:
    """Hanley & McNeil's variance of the AUROC at ``theta`` with both class sizes ``N*``."""
    return theta * (1 - theta) * (1 + star * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / mn


def auroc_interval(auroc: float, *, n_events: int, n_non_events: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's (2006) score-type interval for an AUROC (method 5).

    Parameters
    ----------
    auroc : float
        Observed area under the ROC curve, ties counted one half (0-1).
    n_events, n_non_events : int
        Class sizes the AUROC was computed from (each at least 1).
    confidence : float
        Two-sided level.

    Returns
    -------
    tuple of float
        ``(lower, upper)``; never a single point, ``lower < 1`` even when ``auroc == 1``.
    """
    z = _z(confidence)
    if not (isinstance(auroc, (int, float, np.floating)) and 0.0 <= auroc <= 1.0):
        raise ValueError(ERR_AUROC.format(auroc=auroc))
    m, n = n_events, n_non_events
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in (m, n)):
        raise ValueError(ERR_CLASS_SIZES.format(m=m, n=n))
    star, mn = (m + n) / 2 - 1, float(m) * float(n)

    def gap(theta: float) -> float:  # negative inside the interval
        return (auroc - theta) ** 2 - z * z * _hanley_mcneil_variance(theta, star, mn)

    # gap < 0 just inside (0, 1) next to the estimate and > 0 at the far end: one root on
    # each side; at auroc = 0 or 1 the root next to it is the end itself, so step inside
    inner = min(max(float(auroc), 1e-12), 1.0 - 1e-12)
    lower = 0.0 if auroc <= 0.0 else float(optimize.brentq(gap, 0.0, inner, xtol=1e-14))
    upper = 1.0 if auroc >= 1.0 else float(optimize.brentq(gap, inner, 1.0, xtol=1e-14))
    return lower, upper


def _check(triple: Sequence[float]) -> Triple:
    value, lower, upper = (float(v) for v in triple)
    slack = 1e-9 * max(1.0, abs(value))  # rounding in the caller's interval
    if not (lower - slack <= value <= upper + slack) or any(math.isnan(v) for v in (value, lower, upper)):
        raise ValueError(ERR_TRIPLE.format(triple=tuple(triple)))
    return value, lower, upper


def difference_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """MOVER interval of ``a - b`` for independent estimates ``(value, lower, upper)``.

    Each estimate's interval must be at the level wanted for the difference (e.g. both
    95%). With Wilson intervals the result is Newcombe's (1998) method 10.
    """
    t1, l1, u1 = _check(a)
    t2, l2, u2 = _check(b)
    d = t1 - t2
    return d - math.hypot(t1 - l1, u2 - t2), d + math.hypot(u1 - t1, t2 - l2)


def ratio_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """MOVER-R interval of ``a / b`` for independent non-negative estimates.

    Parameters
    ----------
    a, b : (value, lower, upper)
        Independent estimates with ``lower >= 0`` and ``b``'s value positive.

    Returns
    -------
    tuple of float
        ``(lower, upper)``; ``upper`` is ``inf`` when ``b``'s interval reaches 0 (the
        ratio is then unbounded).
    """
    t1, l1, u1 = _check(a)
    t2, l2, u2 = _check(b)
    if l1 < 0 or l2 < 0 or t2 <= 0:
        raise ValueError(ERR_TRIPLE.format(triple=(tuple(a), tuple(b))))
    product = t1 * t2
    # lower: the r with  t1 - r t2 = sqrt((t1 - l1)^2 + r^2 (u2 - t2)^2), written so that it
    # stays finite when u2 > 2 t2 (a skewed interval of a small reference value)
    a_low, c_low = u2 * (2 * t2 - u2), l1 * (2 * t1 - l1)
    root = math.sqrt(max(product * product - a_low * c_low, 0.0))
    lower = c_low / (product + root) if product + root > 0 else 0.0
    a_up, c_up = l2 * (2 * t2 - l2), u1 * (2 * t1 - u1)
    if a_up <= 0:
        return max(lower, 0.0), math.inf
    upper = (product + math.sqrt(max(product * product - a_up * c_up, 0.0))) / a_up
    return max(lower, 0.0), upper


def largest_gap_interval(differences: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Interval of ``max_k |d_k|`` from intervals of each difference ``d_k``.

    Parameters
    ----------
    differences : sequence of (value, lower, upper)
        One interval per difference, each at level ``1 - alpha / K`` for an overall
        ``1 - alpha`` (Bonferroni over the K differences).

    Returns
    -------
    tuple of float
        ``(lower, upper)``: the largest lower bound of ``|d_k|`` (0 when an interval
        contains 0) and the largest upper bound of ``|d_k|``.
    """
    lows, highs = [], []
    for triple in differences:
        _, low, high = _check(triple)
        lows.append(0.0 if low <= 0.0 <= high else min(abs(low), abs(high)))
        highs.append(max(abs(low), abs(high)))
    return max(lows), max(highs)
