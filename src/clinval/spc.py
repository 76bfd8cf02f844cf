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
standard deviation ``sigma`` while nothing has changed. With *known* target and sigma the
textbook limits hold: two-sided CUSUM ``k = 0.5, h = 5`` (ARL0 ~ 465 periods,
Montgomery), EWMA ``lam = 0.2, L = 3`` (ARL0 ~ 560, Lucas & Saccucci), both by the
Markov-chain method of Brook & Evans (1972).

Target and sigma estimated from a finite reference
--------------------------------------------------
They are not known. A target estimated from a reference hold-out the size of one period
is off by about one sigma, a shift the chart then accumulates in every period: with the
textbook limits 22-25% of in-control charts signal within 6 periods. Following Jones,
Champ & Rigdon (2001, 2004), the run length is computed *unconditionally*: the
standardised values are ``(u_t + c) / s`` with ``u_t ~ N(0, 1)``, ``c ~ N(0, (target_se /
sigma)^2)`` the common error of the target and ``s^2 ~ chi2(sigma_df) / sigma_df`` that of
sigma; the Markov chain is averaged over ``c`` (Gauss-Hermite) and ``s`` (Gauss-Laguerre).
When ``false_alarm`` is given the limit (``h`` or ``L``) is the larger of the textbook one
and the one that keeps the probability of any false signal within the charted periods at
``false_alarm``; the chart states that probability and the unconditional ARL0 at the
limit used. The chosen limits are checked by simulation in ``bench/monitoring_validity.py``.

Public API
----------
``cusum(values, *, target, sigma, k=0.5, h=5.0, target_se=0.0, sigma_df=inf, false_alarm=None)``
    -> :class:`ControlChart`
``ewma(values, *, target, sigma, lam=0.2, L=3.0, target_se=0.0, sigma_df=inf, false_alarm=None)``
    -> :class:`ControlChart`
``in_control_from_reference(reference, *, metric, period_size, n_resamples=500, seed=0)``
    -> :class:`InControl`
``in_control_from_values(values)`` -> :class:`InControl`
``cusum_arl(*, k, h, shift=0.0)``, ``ewma_arl(*, lam, L, shift=0.0)`` -> float (known parameters)
``cusum_run_length(*, k, h, horizon, target_error=0.0, sigma_df=inf)``,
``ewma_run_length(*, lam, L, horizon, target_error=0.0, sigma_df=inf)`` -> :class:`RunLength`
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from clinval.errors import InputError

__all__ = [
    "ControlChart",
    "InControl",
    "RunLength",
    "cusum",
    "cusum_arl",
    "cusum_run_length",
    "ewma",
    "ewma_arl",
    "ewma_run_length",
    "in_control_from_reference",
    "in_control_from_values",
]

ERR_SIGMA = "sigma must be positive and finite (got {sigma!r}); estimate it from the reference period"
ERR_PARAMETER = "{name} must be {rule}, got {value!r}"
ERR_VALUES = "values must be a one-dimensional sequence of numbers"
ERR_SIGMA_LENGTH = "sigma has {n_sigma} values but there are {n_values} points"
ERR_FEW_VALUES = "need at least 2 finite reference values to estimate target and sigma, got {n}"
ERR_FEW_RESAMPLES = "need at least 20 finite metric values from resampling, got {n} (of {total})"

ERR_FALSE_ALARM = "false_alarm must be None or strictly between 0 and 1, got {value!r}"
ERR_ESTIMATION = "target_se must be >= 0 and sigma_df > 1 (got {target_se!r} and {sigma_df!r})"

ASSUMPTION = (
    "in control: per-period values independent, approximately normal with mean {target:.6g} "
    "and sd {sigma}; two-sided ARL0 = {arl:.0f} periods (false-alarm rate {rate:.4f} per period); "
    "probability of a false signal within the {horizon} charted period(s) {within:.1%}"
)
ASSUMPTION_ESTIMATED = (
    "in control: per-period values independent, approximately normal with mean {target:.6g} "
    "and sd {sigma}, both estimated from the reference (standard error of the target {error:.2f} sd, "
    "sd with {df} degrees of freedom); the limit {name} = {limit:.3g} (textbook {textbook:g}) keeps the "
    "probability of a false signal within the {horizon} charted period(s) at {within:.1%}; in-control "
    "ARL0 = {arl:,.0f} periods averaged over the estimation error"
)

# Markov-chain states for ARL computation; 201 gives ARL within ~0.5% of the literature.
_ARL_STATES = 201
# States of the chains averaged over the estimation error (checked against simulation in tests).
_MIXTURE_STATES = 150
_TARGET_NODES = 24  # Gauss-Hermite nodes over the target's error
_SIGMA_NODES = 5  # Gauss-Laguerre nodes over the sd's error
_ARL_CAP = 1e12  # a chain that practically never leaves its in-control states
_RESAMPLE_CELLS = 1_000_000  # resampled records held at once by a metric that resamples in blocks


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
    reference_size : int | None
        Reference rows (bootstrap) or reference values the estimate rests on.
    target_se : float
        Standard error of ``target`` from the finite reference (units of the metric).
    sigma_df : float
        Degrees of freedom of ``sigma`` (normal theory; ``inf`` = known).
    """

    target: float
    sigma: float
    n: int
    method: str
    period_size: int | None = None
    reference_size: int | None = None
    target_se: float = 0.0
    sigma_df: float = math.inf


@dataclass(frozen=True)
class RunLength:
    """In-control run length of a chart, averaged over the estimation error of its parameters.

    Attributes
    ----------
    arl : float
        Average run length (periods until a false signal).
    false_alarm_within : float
        Probability of at least one false signal within ``horizon`` periods.
    horizon : int
        Periods charted.
    """

    arl: float
    false_alarm_within: float
    horizon: int


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
        Two-sided ARL0 under the stated assumption (periods), averaged over the
        estimation error of target and sigma when they were estimated.
    false_alarm_rate : float
        ``1 / in_control_arl`` per period.
    false_alarm_within : float
        Probability of at least one false signal within the charted periods.
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
    false_alarm_within: float = math.nan

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
        raise InputError(ERR_PARAMETER.format(name=name, rule="a positive number", value=value))


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
        raise InputError(ERR_PARAMETER.format(name="k", rule="a number >= 0", value=k))

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
        raise InputError(ERR_PARAMETER.format(name="lam", rule="in (0, 1]", value=lam))
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


# --------------------------------------------------------------------------- estimated parameters
def _check_estimation(target_error: float, sigma_df: float) -> None:
    if not (np.isfinite(target_error) and target_error >= 0 and sigma_df > 1):
        raise InputError(ERR_ESTIMATION.format(target_se=target_error, sigma_df=sigma_df))


@lru_cache(maxsize=64)
def _error_nodes(target_error: float, sigma_df: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature nodes ``(c, s, weight)`` over the target's error ``c ~ N(0, target_error^2)``
    (Gauss-Hermite) and the sd's ratio ``s^2 ~ chi2(df) / df`` (generalised Gauss-Laguerre,
    Golub-Welsch, so large ``df`` cannot overflow)."""
    if target_error > 0:
        x, w = np.polynomial.hermite_e.hermegauss(_TARGET_NODES)
        c, wc = x * target_error, w / w.sum()
    else:
        c, wc = np.zeros(1), np.ones(1)
    if np.isfinite(sigma_df):
        alpha = sigma_df / 2 - 1
        k = np.arange(_SIGMA_NODES)
        off = np.sqrt(np.arange(1, _SIGMA_NODES) * (np.arange(1, _SIGMA_NODES) + alpha))
        nodes, vectors = np.linalg.eigh(np.diag(2 * k + alpha + 1) + np.diag(off, 1) + np.diag(off, -1))
        s, ws = np.sqrt(2 * nodes / sigma_df), vectors[0] ** 2
    else:
        s, ws = np.ones(1), np.ones(1)
    return np.repeat(c, s.size), np.tile(s, c.size), np.outer(wc, ws).ravel()


def _survival(start: np.ndarray, transition: np.ndarray, masks: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """In-control probability mass after each of ``len(masks)`` steps (states beyond a step's
    mask signal), and the distribution after the last step."""
    v = start
    alive = []
    for mask in masks:
        v = (v @ transition) * mask
        alive.append(float(v.sum()))
    return np.asarray(alive), v


def _expected_steps(transition: np.ndarray) -> np.ndarray:
    """Expected steps to a signal from each state: ``(I - Q)^-1 1``, capped."""
    size = transition.shape[0]
    steps = np.linalg.solve(np.eye(size) - transition * (1 - 1 / _ARL_CAP), np.ones(size))
    return np.minimum(steps, _ARL_CAP)


def _cusum_transition(k: float, h: float, c: float, s: float) -> np.ndarray:
    """One-sided upper CUSUM chain (Brook & Evans) for increments ``(u + c) / s``."""
    states = _MIXTURE_STATES
    width = 2.0 * h / (2 * states - 1)
    # P(next <= upper edge of cell j | state i) depends on j - i only: a Toeplitz matrix
    lag = np.arange(-(states - 1), states)
    cdf = special.ndtr(s * ((lag + 0.5) * width + k) - c)
    below = cdf[(np.arange(states)[None, :] - np.arange(states)[:, None]) + states - 1]
    transition = np.diff(below, axis=1, prepend=0.0)
    return transition


@lru_cache(maxsize=256)
def _cusum_mixture(k: float, h: float, horizon: int, target_error: float, sigma_df: float,
                   with_arl: bool) -> RunLength:
    c, s, w = _error_nodes(target_error, sigma_df)
    start = np.zeros(_MIXTURE_STATES)
    start[0] = 1.0
    masks = [np.ones(_MIXTURE_STATES)] * horizon
    within = arl = 0.0
    for ci, si, wi in zip(c, s, w):
        up, down = _cusum_transition(k, h, ci, si), _cusum_transition(k, h, -ci, si)
        # the two one-sided charts rarely both signal within a few periods: the union bound is tight
        alarm = sum(1.0 - _survival(start, q, masks)[0][-1] for q in (up, down)) if horizon else 0.0
        within += wi * min(1.0, alarm)
        if with_arl:
            plus, minus = _expected_steps(up)[0], _expected_steps(down)[0]
            arl += wi / (1.0 / plus + 1.0 / minus)  # Lucas & Crosier's two-sided combination
    return RunLength(arl=float(arl) if with_arl else math.nan, false_alarm_within=float(within), horizon=int(horizon))


def cusum_run_length(*, k: float, h: float, horizon: int, target_error: float = 0.0,
                     sigma_df: float = math.inf) -> RunLength:
    """In-control run length of the two-sided CUSUM with estimated target and sd.

    Parameters
    ----------
    k, h : float
        Reference value and decision interval, in (estimated) sigma units.
    horizon : int
        Periods charted: the result includes the probability of a false signal within them.
    target_error : float
        Standard error of the target in sigma units (0 = known target).
    sigma_df : float
        Degrees of freedom of the sd estimate (``inf`` = known sd).

    Returns
    -------
    RunLength
        Averaged over the estimation error (the unconditional run length).
    """
    _check_positive("h", h)
    _check_estimation(target_error, sigma_df)
    return _cusum_mixture(float(k), float(h), int(horizon), float(target_error), float(sigma_df), True)


def _ewma_half_widths(lam: float, L: float, steps: int) -> np.ndarray:
    t = np.arange(1, steps + 1)
    return L * np.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * t)))


@lru_cache(maxsize=256)
def _ewma_mixture(lam: float, L: float, horizon: int, target_error: float, sigma_df: float,
                  with_arl: bool) -> RunLength:
    states = _MIXTURE_STATES
    limit = L * np.sqrt(lam / (2.0 - lam))
    width = 2.0 * limit / states
    centres = -limit + width * (np.arange(states) + 0.5)
    edges = -limit + width * np.arange(states + 1)
    # exact (time-varying) limits, as the chart uses; afterwards every state is in control
    steady = int(np.argmax(_ewma_half_widths(lam, L, 10_000) >= limit - width / 2)) + 1
    widths = _ewma_half_widths(lam, L, max(horizon, steady))
    masks = [(np.abs(centres) <= hw).astype(float) for hw in widths]
    c, s, w = _error_nodes(target_error, sigma_df)
    within = arl = 0.0
    for ci, si, wi in zip(c, s, w):
        # next = (1 - lam) a + lam (u + c) / s  <=  e   <=>   u <= s (e - (1 - lam) a) / lam - c
        cdf = special.ndtr(si * (edges[None, :] - (1 - lam) * np.r_[0.0, centres][:, None]) / lam - ci)
        moves = np.diff(cdf, axis=1)
        first, transition = moves[0] * masks[0], moves[1:]
        alive, last = _survival(first, transition, masks[1:])
        alive = np.r_[first.sum(), alive]
        within += wi * (1.0 - alive[horizon - 1]) if horizon else 0.0
        if with_arl:
            tail = float(last @ _expected_steps(transition)) - alive[-1]
            arl += wi * min(1.0 + float(alive.sum()) + tail, _ARL_CAP)
    return RunLength(arl=float(arl) if with_arl else math.nan, false_alarm_within=float(within), horizon=int(horizon))


def ewma_run_length(*, lam: float, L: float, horizon: int, target_error: float = 0.0,
                    sigma_df: float = math.inf) -> RunLength:
    """In-control run length of the EWMA chart with exact limits and estimated target and sd.

    Parameters as for :func:`cusum_run_length`, with ``lam`` (weight of the newest value)
    and ``L`` (limit width in EWMA standard deviations).
    """
    if not (isinstance(lam, (int, float)) and 0 < lam <= 1):
        raise InputError(ERR_PARAMETER.format(name="lam", rule="in (0, 1]", value=lam))
    _check_positive("L", L)
    _check_estimation(target_error, sigma_df)
    return _ewma_mixture(float(lam), float(L), int(horizon), float(target_error), float(sigma_df), True)


def _limit(within: Callable[[float], float], textbook: float, false_alarm: float) -> float:
    """The smallest limit >= ``textbook`` whose probability of a false signal is ``false_alarm``."""
    if within(textbook) <= false_alarm:
        return float(textbook)
    high = 2.0 * textbook
    while within(high) > false_alarm:
        high *= 2.0
        if high > 1e3 * textbook:  # cannot happen for target errors a chart could use
            return float(high)
    return float(optimize.brentq(lambda x: within(x) - false_alarm, textbook, high, xtol=1e-3 * textbook))


# --------------------------------------------------------------------------- charts
def _standardise(values: Sequence[float], target: float, sigma: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(ERR_VALUES)
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(x.size, float(s))
    elif s.size != x.size:
        raise InputError(ERR_SIGMA_LENGTH.format(n_sigma=s.size, n_values=x.size))
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise InputError(ERR_SIGMA.format(sigma=sigma))
    if not np.isfinite(target):
        raise InputError(ERR_PARAMETER.format(name="target", rule="finite", value=target))
    return x, (x - target) / s


def _sigma_text(sigma: float | Sequence[float]) -> str:
    s = np.asarray(sigma, dtype=np.float64)
    return f"{float(s):.6g}" if s.ndim == 0 else "per point (given)"


def _design(kind: str, z: np.ndarray, sigma: float | Sequence[float], textbook: float, shape: float,
            target: float, target_se: float, sigma_df: float, false_alarm: float | None) -> tuple[float, RunLength, str]:
    """The limit to use, its in-control run length and the assumption text."""
    if false_alarm is not None and not (isinstance(false_alarm, (int, float)) and 0 < false_alarm < 1):
        raise InputError(ERR_FALSE_ALARM.format(value=false_alarm))
    scale = float(np.median(np.asarray(sigma, dtype=float)))
    target_error = float(target_se) / scale
    _check_estimation(target_error, sigma_df)
    horizon = int(np.isfinite(z).sum())
    name = "h" if kind == "cusum" else "L"
    mixture = _cusum_mixture if kind == "cusum" else _ewma_mixture
    # rounded so that charts of metrics with nearly the same reference share one cached design
    key = (round(target_error, 4), float(round(sigma_df)) if np.isfinite(sigma_df) else math.inf)
    estimated = key != (0.0, math.inf)
    limit = float(textbook)
    if false_alarm is not None:
        limit = _limit(lambda x: mixture(shape, x, horizon, *key, False).false_alarm_within, textbook, false_alarm)
    if estimated:
        run = mixture(shape, limit, horizon, *key, True)
        df = "infinite" if not np.isfinite(sigma_df) else f"{sigma_df:.0f}"
        text = ASSUMPTION_ESTIMATED.format(target=target, sigma=_sigma_text(sigma), error=target_error, df=df, name=name,
                                           limit=limit, textbook=textbook, horizon=horizon,
                                           within=run.false_alarm_within, arl=run.arl)
    else:
        arl = cusum_arl(k=shape, h=limit) if kind == "cusum" else ewma_arl(lam=shape, L=limit)
        run = RunLength(arl=arl, false_alarm_within=mixture(shape, limit, horizon, 0.0, math.inf, False).false_alarm_within,
                        horizon=horizon)
        text = ASSUMPTION.format(target=target, sigma=_sigma_text(sigma), arl=arl, rate=1.0 / arl, horizon=horizon,
                                 within=run.false_alarm_within)
    return limit, run, text


def cusum(
    values: Sequence[float],
    *,
    target: float,
    sigma: float | Sequence[float],
    k: float = 0.5,
    h: float = 5.0,
    target_se: float = 0.0,
    sigma_df: float = math.inf,
    false_alarm: float | None = None,
) -> ControlChart:
    """Two-sided tabular CUSUM of standardised values.

    ``C+_t = max(0, C+_{t-1} + z_t - k)``, ``C-_t = max(0, C-_{t-1} - z_t - k)`` with
    ``z_t = (x_t - target) / sigma_t``; a point signals when either exceeds the decision
    interval. The sums are not reset after a signal (the chart shows how long a shift
    persists). A missing value (NaN) carries the sums forward and does not signal.

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
        Decision interval in sigma units (the textbook value; see ``false_alarm``).
    target_se : float, default 0
        Standard error of ``target`` (units of the metric; 0 = known target).
    sigma_df : float, default inf
        Degrees of freedom of ``sigma`` (inf = known sd).
    false_alarm : float or None
        If given, the decision interval is the larger of ``h`` and the one that keeps the
        probability of any false signal within the charted periods at ``false_alarm``,
        allowing for the estimation error of target and sigma.
    """
    _check_positive("h", h)
    x, z = _standardise(values, target, sigma)
    limit, run, text = _design("cusum", z, sigma, h, k, target, target_se, sigma_df, false_alarm)
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
         "upper_limit": limit, "lower_limit": limit, "signal": (upper > limit) | (lower > limit)}
    )
    return ControlChart(
        kind="cusum", target=float(target), sigma=float(np.asarray(sigma, dtype=float).ravel()[0]),
        parameters={"k": float(k), "h": limit}, in_control_arl=run.arl, false_alarm_rate=1.0 / run.arl,
        assumption=text, points=points, false_alarm_within=run.false_alarm_within,
    )


def ewma(
    values: Sequence[float],
    *,
    target: float,
    sigma: float | Sequence[float],
    lam: float = 0.2,
    L: float = 3.0,
    target_se: float = 0.0,
    sigma_df: float = math.inf,
    false_alarm: float | None = None,
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
    target, sigma, target_se, sigma_df, false_alarm
        As for :func:`cusum` (``false_alarm`` widens ``L``).
    lam : float, default 0.2
        Weight of the newest value.
    L : float, default 3.0
        Limit width in EWMA standard deviations (the textbook value).
    """
    if not (isinstance(lam, (int, float)) and 0 < lam <= 1):
        raise InputError(ERR_PARAMETER.format(name="lam", rule="in (0, 1]", value=lam))
    _check_positive("L", L)
    x, z = _standardise(values, target, sigma)
    limit, run, text = _design("ewma", z, sigma, L, lam, target, target_se, sigma_df, false_alarm)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), x.shape)
    w = np.zeros(x.size)
    half_width = np.zeros(x.size)
    current, steps = 0.0, 0
    for t, zt in enumerate(z):
        if np.isfinite(zt):
            current = lam * zt + (1.0 - lam) * current
            steps += 1
        w[t] = current
        half_width[t] = limit * np.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * max(steps, 1))))
    signal = np.isfinite(z) & (np.abs(w) > half_width)
    points = pd.DataFrame(
        {"value": x, "z": z, "ewma": target + w * s,
         "upper_limit": target + half_width * s, "lower_limit": target - half_width * s, "signal": signal}
    )
    return ControlChart(
        kind="ewma", target=float(target), sigma=float(np.asarray(sigma, dtype=float).ravel()[0]),
        parameters={"lam": float(lam), "L": limit}, in_control_arl=run.arl, false_alarm_rate=1.0 / run.arl,
        assumption=text, points=points, false_alarm_within=run.false_alarm_within,
    )


# --------------------------------------------------------------------------- limits
def in_control_from_values(values: Sequence[float]) -> InControl:
    """Target and sigma from metric values of reference sub-periods (mean, sd ddof=1);
    the target's standard error is ``sd / sqrt(n)`` and sigma has ``n - 1`` degrees of freedom.

    Parameters
    ----------
    values : sequence of float
        The metric in each reference sub-period (e.g. each month of the reference
        years), at about the production period size. NaN values are ignored.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise InputError(ERR_FEW_VALUES.format(n=x.size))
    sd = float(x.std(ddof=1))
    return InControl(target=float(x.mean()), sigma=sd, n=int(x.size), method="reference values",
                     reference_size=int(x.size), target_se=sd / math.sqrt(x.size), sigma_df=float(x.size - 1))


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
    with one class) are skipped; at least 20 must remain. ``target_se`` is
    ``sigma * sqrt(period_size / len(reference) + 1 / n)``: the reference is itself a sample
    (its metric is off by that much), and ``sigma_df`` combines the reference size and the
    number of resamples.

    Parameters
    ----------
    reference : pandas.DataFrame
        Reference-period rows (e.g. with ``predicted_risk`` and the label).
    metric : callable
        ``metric(frame) -> float``, e.g. mean predicted risk. A metric with a
        ``resampled(frame, rows) -> values`` method (e.g.
        :class:`clinval.performance.PeriodMetric`) is evaluated on blocks of resamples at
        once, with the same draws and values, without a frame per resample.
    period_size : int
        Rows per production period (the sd shrinks like 1/sqrt(period_size)).
    n_resamples : int, default 500
    seed : int, default 0
        Seed of the resampling (results are reproducible).
    """
    if isinstance(period_size, bool) or not isinstance(period_size, (int, np.integer)) or period_size < 1:
        raise InputError(ERR_PARAMETER.format(name="period_size", rule="a positive integer", value=period_size))
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    resampled = getattr(metric, "resampled", None)
    if resampled is None:
        for i in range(n_resamples):
            rows = rng.integers(0, len(reference), size=period_size)
            values[i] = float(metric(reference.iloc[rows]))
    else:
        # the same draws in blocks (one integers() call per block gives the same stream as one per resample)
        block = max(1, _RESAMPLE_CELLS // period_size)
        for start in range(0, n_resamples, block):
            stop = min(start + block, n_resamples)
            values[start:stop] = resampled(reference, rng.integers(0, len(reference), size=(stop - start, period_size)))
    finite = values[np.isfinite(values)]
    if finite.size < 20:
        raise InputError(ERR_FEW_RESAMPLES.format(n=finite.size, total=n_resamples))
    sigma = float(finite.std(ddof=1))
    m = len(reference)
    return InControl(
        target=float(finite.mean()), sigma=sigma, n=int(finite.size), method="bootstrap", period_size=int(period_size),
        reference_size=int(m),
        # the reference's own sampling error (its metric varies like sigma^2 * period_size / m)
        # plus the Monte Carlo error of the mean of the resamples
        target_se=sigma * math.sqrt(period_size / m + 1.0 / finite.size),
        # normal theory for an sd from m rows, plus the resampling noise of the sd itself
        sigma_df=1.0 / (1.0 / max(m - 1, 1) + 1.0 / (finite.size - 1)),
    )
