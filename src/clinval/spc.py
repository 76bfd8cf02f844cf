"""CUSUM and EWMA control charts for monitored metrics, limits from the reference period.

A monitored metric (mean predicted risk, observed/expected ratio, AUROC, ...) is
computed once per production period. Its in-control mean (``target``) and standard
deviation (``sigma``) at the period's size are estimated from the reference period,
either by resampling reference rows (:func:`in_control_from_reference`, a bootstrap
at the production period size) or from a series of reference-period values
(:func:`in_control_from_values`, e.g. monthly values within the reference years).

In-control assumption (stated in every chart's ``assumption`` text)
--------------------------------------------------------------------
Per-period values are independent and approximately normal with mean ``target`` and
standard deviation ``sigma`` while nothing has changed. Under it the in-control average
run length (ARL0, periods until a false alarm) is computed by the Markov-chain method of
Brook & Evans (1972); ``false_alarm_rate = 1 / ARL0`` per period. Defaults: two-sided
CUSUM ``k = 0.5, h = 5`` (ARL0 ~ 465: textbook value, Montgomery), EWMA ``lam = 0.2,
L = 3`` (ARL0 ~ 560: Lucas & Saccucci). Estimation error in ``target``/``sigma`` from a
short reference period lowers the real ARL0; estimate them from many resamples.

Public API
----------
``cusum(values, *, target, sigma, k=0.5, h=5.0)`` -> :class:`ControlChart`
``ewma(values, *, target, sigma, lam=0.2, L=3.0)`` -> :class:`ControlChart`
``in_control_from_reference(reference, *, metric, period_size, n_resamples=500, seed=0)``
    -> :class:`InControl`
``in_control_from_values(values)`` -> :class:`InControl`
``cusum_arl(*, k, h, shift=0.0)``, ``ewma_arl(*, lam, L, shift=0.0)`` -> float
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ControlChart",
    "InControl",
    "cusum",
    "cusum_arl",
    "ewma",
    "ewma_arl",
    "in_control_from_reference",
    "in_control_from_values",
]

ERR_SIGMA = "sigma must be positive and finite (got {sigma!r}); estimate it from the reference period"
ERR_PARAMETER = "{name} must be {rule}, got {value!r}"
ERR_VALUES = "values must be a one-dimensional sequence of numbers"
ERR_SIGMA_LENGTH = "sigma has {n_sigma} values but there are {n_values} points"
ERR_FEW_VALUES = "need at least 2 finite reference values to estimate target and sigma, got {n}"
ERR_FEW_RESAMPLES = "need at least 20 finite metric values from resampling, got {n} (of {total})"

ASSUMPTION = (
    "in control: per-period values independent, approximately normal with mean {target:.6g} "
    "and sd {sigma}; two-sided ARL0 = {arl:.0f} periods (false-alarm rate {rate:.4f} per period)"
)

# Markov-chain states for ARL computation; 201 gives ARL within ~0.5% of the literature.
_ARL_STATES = 201


@dataclass(frozen=True)
class InControl:
    """In-control mean and standard deviation of a monitored metric.

    Attributes
    ----------
    target : float
        In-control mean (units of the metric).
    sigma : float
        In-control standard deviation of one period's value (units of the metric).
    n : int
        Values the estimate rests on (resamples or reference periods).
    method : str
        ``"bootstrap"`` or ``"reference values"``.
    period_size : int | None
        Rows per resampled period (bootstrap only).
    """

    target: float
    sigma: float
    n: int
    method: str
    period_size: int | None = None


@dataclass(frozen=True, eq=False)
class ControlChart:
    """A CUSUM or EWMA chart.

    Attributes
    ----------
    kind : str
        ``"cusum"`` or ``"ewma"``.
    target, sigma : float
        In-control mean and (first) sd used.
    parameters : dict
        ``{"k", "h"}`` or ``{"lam", "L"}`` (in units of sigma).
    in_control_arl : float
        Two-sided ARL0 under the stated assumption (periods).
    false_alarm_rate : float
        ``1 / in_control_arl`` per period.
    assumption : str
        The in-control assumption in words.
    points : pandas.DataFrame
        Per point: ``value``, ``z`` (standardised), the statistic(s)
        (``upper``/``lower`` for CUSUM, ``ewma`` for EWMA), ``upper_limit``,
        ``lower_limit`` and ``signal`` (bool).
    """

    kind: str
    target: float
    sigma: float
    parameters: dict
    in_control_arl: float
    false_alarm_rate: float
    assumption: str
    points: pd.DataFrame

    @property
    def first_signal(self) -> int | None:
        """Position of the first signalling point, or None."""
        hits = np.flatnonzero(self.points["signal"].to_numpy())
        return int(hits[0]) if hits.size else None


# --------------------------------------------------------------------------- ARL
def _markov_arl(transition: np.ndarray, start: int) -> float:
    """ARL from the substochastic transition matrix among in-control states."""
    size = transition.shape[0]
    arl = np.linalg.solve(np.eye(size) - transition, np.ones(size))
    return float(arl[start])


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
        raise ValueError(ERR_PARAMETER.format(name=name, rule="a positive number", value=value))


def cusum_arl(*, k: float, h: float, shift: float = 0.0) -> float:
    """Two-sided tabular CUSUM average run length (Brook & Evans Markov chain).

    Parameters
    ----------
    k, h : float
        Reference value and decision interval, in sigma units.
    shift : float
        True mean shift in sigma units (0 gives the in-control ARL0).

    Returns
    -------
    float
        Periods until the first signal, combining the two one-sided charts by
        ``1/ARL = 1/ARL+ + 1/ARL-`` (Lucas & Crosier; accurate for k >= 0.5 or so).
    """
    _check_positive("h", h)
    if not (isinstance(k, (int, float)) and k >= 0):
        raise ValueError(ERR_PARAMETER.format(name="k", rule="a number >= 0", value=k))

    def one_sided(delta: float) -> float:
        states = _ARL_STATES
        width = 2.0 * h / (2 * states - 1)
        centres = np.arange(states) * width  # state 0 is the reset state at 0
        edges_hi = centres + width / 2
        edges_lo = centres - width / 2
        # From state i the next value is max(0, c_i + x - k), x ~ N(delta, 1).
        mean = centres[:, None] - k + delta
        upper = stats.norm.cdf(edges_hi[None, :] - mean)
        lower = stats.norm.cdf(edges_lo[None, :] - mean)
        transition = upper - lower
        transition[:, 0] = stats.norm.cdf(edges_hi[0] - mean[:, 0])  # all mass below goes to 0
        return _markov_arl(transition, 0)

    plus, minus = one_sided(shift), one_sided(-shift)
    return 1.0 / (1.0 / plus + 1.0 / minus)


def ewma_arl(*, lam: float, L: float, shift: float = 0.0) -> float:
    """EWMA average run length with asymptotic limits (Lucas & Saccucci Markov chain).

    Parameters
    ----------
    lam : float
        Smoothing weight in (0, 1].
    L : float
        Limit width in asymptotic EWMA standard deviations.
    shift : float
        True mean shift in sigma units (0 gives ARL0).
    """
    if not (isinstance(lam, (int, float)) and 0 < lam <= 1):
        raise ValueError(ERR_PARAMETER.format(name="lam", rule="in (0, 1]", value=lam))
    _check_positive("L", L)
    limit = L * np.sqrt(lam / (2.0 - lam))
    states = _ARL_STATES
    width = 2.0 * limit / states
    centres = -limit + width * (np.arange(states) + 0.5)
    mean = (1.0 - lam) * centres[:, None] + lam * shift
    hi = (centres[None, :] + width / 2 - mean) / lam
    lo = (centres[None, :] - width / 2 - mean) / lam
    transition = stats.norm.cdf(hi) - stats.norm.cdf(lo)
    return _markov_arl(transition, states // 2)


# --------------------------------------------------------------------------- charts
def _standardise(values: Sequence[float], target: float, sigma: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(ERR_VALUES)
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(x.size, float(s))
    elif s.size != x.size:
        raise ValueError(ERR_SIGMA_LENGTH.format(n_sigma=s.size, n_values=x.size))
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(ERR_SIGMA.format(sigma=sigma))
    if not np.isfinite(target):
        raise ValueError(ERR_PARAMETER.format(name="target", rule="finite", value=target))
    return x, (x - target) / s


def _sigma_text(sigma: float | Sequence[float]) -> str:
    s = np.asarray(sigma, dtype=np.float64)
    return f"{float(s):.6g}" if s.ndim == 0 else "per point (given)"


def cusum(
    values: Sequence[float],
    *,
    target: float,
    sigma: float | Sequence[float],
    k: float = 0.5,
    h: float = 5.0,
) -> ControlChart:
    """Two-sided tabular CUSUM of standardised values.

    ``C+_t = max(0, C+_{t-1} + z_t - k)``, ``C-_t = max(0, C-_{t-1} - z_t - k)`` with
    ``z_t = (x_t - target) / sigma_t``; a point signals when either exceeds ``h``. The
    sums are not reset after a signal (the chart shows how long a shift persists). A
    missing value (NaN) carries the sums forward and does not signal.

    Parameters
    ----------
    values : sequence of float
        One value of the monitored metric per period, in time order.
    target : float
        In-control mean (from the reference period).
    sigma : float or sequence of float
        In-control sd of one period's value; per point when period sizes differ.
    k : float, default 0.5
        Reference value in sigma units (detects shifts of about 2k fastest).
    h : float, default 5.0
        Decision interval in sigma units.
    """
    _check_positive("h", h)
    x, z = _standardise(values, target, sigma)
    upper = np.zeros(x.size)
    lower = np.zeros(x.size)
    hi = lo = 0.0
    for t, zt in enumerate(z):
        if np.isfinite(zt):
            hi = max(0.0, hi + zt - k)
            lo = max(0.0, lo - zt - k)
        upper[t], lower[t] = hi, lo
    points = pd.DataFrame(
        {"value": x, "z": z, "upper": upper, "lower": lower,
         "upper_limit": float(h), "lower_limit": float(h), "signal": (upper > h) | (lower > h)}
    )
    arl = cusum_arl(k=k, h=h)
    return ControlChart(
        kind="cusum", target=float(target), sigma=float(np.asarray(sigma, dtype=float).ravel()[0]),
        parameters={"k": float(k), "h": float(h)}, in_control_arl=arl, false_alarm_rate=1.0 / arl,
        assumption=ASSUMPTION.format(target=target, sigma=_sigma_text(sigma), arl=arl, rate=1.0 / arl),
        points=points,
    )


def ewma(
    values: Sequence[float],
    *,
    target: float,
    sigma: float | Sequence[float],
    lam: float = 0.2,
    L: float = 3.0,
) -> ControlChart:
    """EWMA chart of standardised values with exact (time-varying) limits.

    ``w_t = lam * z_t + (1 - lam) * w_{t-1}``, ``w_0 = 0``; limits
    ``+/- L * sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2t)))`` in sigma units; the
    ``ewma`` column and limits are reported back in the metric's units. A missing value
    (NaN) carries the average forward and does not signal.

    Parameters
    ----------
    values : sequence of float
        One value of the monitored metric per period, in time order.
    target, sigma
        As for :func:`cusum`.
    lam : float, default 0.2
        Weight of the newest value.
    L : float, default 3.0
        Limit width in EWMA standard deviations.
    """
    if not (isinstance(lam, (int, float)) and 0 < lam <= 1):
        raise ValueError(ERR_PARAMETER.format(name="lam", rule="in (0, 1]", value=lam))
    _check_positive("L", L)
    x, z = _standardise(values, target, sigma)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape)
    w = np.zeros(x.size)
    half_width = np.zeros(x.size)
    current, steps = 0.0, 0
    for t, zt in enumerate(z):
        if np.isfinite(zt):
            current = lam * zt + (1.0 - lam) * current
            steps += 1
        w[t] = current
        half_width[t] = L * np.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * max(steps, 1))))
    signal = np.isfinite(z) & (np.abs(w) > half_width)
    points = pd.DataFrame(
        {"value": x, "z": z, "ewma": target + w * s,
         "upper_limit": target + half_width * s, "lower_limit": target - half_width * s, "signal": signal}
    )
    arl = ewma_arl(lam=lam, L=L)
    return ControlChart(
        kind="ewma", target=float(target), sigma=float(np.asarray(sigma, dtype=float).ravel()[0]),
        parameters={"lam": float(lam), "L": float(L)}, in_control_arl=arl, false_alarm_rate=1.0 / arl,
        assumption=ASSUMPTION.format(target=target, sigma=_sigma_text(sigma), arl=arl, rate=1.0 / arl),
        points=points,
    )


# --------------------------------------------------------------------------- limits
def in_control_from_values(values: Sequence[float]) -> InControl:
    """Target and sigma from metric values of reference sub-periods (mean, sd ddof=1).

    Parameters
    ----------
    values : sequence of float
        The metric in each reference sub-period (e.g. each month of the reference
        years), at about the production period size. NaN values are ignored.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise ValueError(ERR_FEW_VALUES.format(n=x.size))
    return InControl(target=float(x.mean()), sigma=float(x.std(ddof=1)), n=int(x.size), method="reference values")


def in_control_from_reference(
    reference: pd.DataFrame,
    *,
    metric: Callable[[pd.DataFrame], float],
    period_size: int,
    n_resamples: int = 500,
    seed: int = 0,
) -> InControl:
    """Target and sigma of a metric at a period size, by resampling reference rows.

    Draws ``n_resamples`` periods of ``period_size`` rows with replacement from the
    reference period and evaluates ``metric`` on each; target and sigma are the mean and
    sd (ddof=1) of those values. Resamples where the metric is not finite (e.g. AUROC
    with one class) are skipped; at least 20 must remain.

    Parameters
    ----------
    reference : pandas.DataFrame
        Reference-period rows (e.g. with ``predicted_risk`` and the label).
    metric : callable
        ``metric(frame) -> float``, e.g. mean predicted risk.
    period_size : int
        Rows per production period (the sd shrinks like 1/sqrt(period_size)).
    n_resamples : int, default 500
    seed : int, default 0
        Seed of the resampling (results are reproducible).
    """
    if isinstance(period_size, bool) or not isinstance(period_size, (int, np.integer)) or period_size < 1:
        raise ValueError(ERR_PARAMETER.format(name="period_size", rule="a positive integer", value=period_size))
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        rows = rng.integers(0, len(reference), size=period_size)
        values[i] = float(metric(reference.iloc[rows]))
    finite = values[np.isfinite(values)]
    if finite.size < 20:
        raise ValueError(ERR_FEW_RESAMPLES.format(n=finite.size, total=n_resamples))
    return InControl(
        target=float(finite.mean()), sigma=float(finite.std(ddof=1)), n=int(finite.size),
        method="bootstrap", period_size=int(period_size),
    )
