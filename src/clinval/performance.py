"""Discrimination and calibration of a risk model, each with a confidence interval.

All functions take ``y`` (0/1 outcomes) and ``risk`` (predicted probabilities in (0, 1))
and return frozen :class:`Estimate` values (point, lower, upper, method) so a notebook
can show them and a JSON record can hold them.

Methods
-------
AUROC           DeLong et al. (1988) variance, fast midrank algorithm (Sun & Xu 2014);
                paired DeLong for the difference between two models on the same records.
AUPRC, Brier    percentile bootstrap (``scipy.stats.bootstrap``, paired resampling).
Calibration     slope: logistic regression of ``y`` on ``logit(risk)``, Wald CI;
                intercept (calibration-in-the-large): logistic regression with
                ``logit(risk)`` as offset, CI from the robust (sandwich, HC0) SE, which
                stays valid when the slope is not 1 and the offset model is wrong
                (the model-based SE covered 90% at nominal 95% for an over-fitted model;
                statsmodels ``cov_type="HC0"``).
O/E             observed / expected events; CI from the delta method on ``log(O/E)``,
                SE = sqrt((1 - O/n) / O) (Debray et al. 2017, BMJ 356:i6460).
CBPE            label-free estimates: re-calibrate the risk on labelled reference data
                (logistic regression on a cubic B-spline of ``logit(risk)``), then the
                expected AUROC, prevalence, Brier score and, at an operating threshold,
                sensitivity and specificity if outcomes follow the calibrated risk.
                The interval is for the *realised* value: each simulation draws the
                calibrator's coefficients from their sampling distribution, then the
                outcomes, so a small reference widens it.

Where a metric cannot be computed (one outcome class, too few events) the estimate says
``insufficient data: <reason>`` in ``status`` instead of returning a silent NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from sklearn.metrics import average_precision_score, brier_score_loss
from sklearn.preprocessing import SplineTransformer

from clinval import memo
from clinval.errors import InputError
from clinval.risk import logit
from clinval.vocabulary import STATUS_OK

__all__ = [
    "CBPE_METRICS",
    "CalibrationCurve",
    "Estimate",
    "PerformanceEstimator",
    "auprc",
    "auroc",
    "auroc_difference",
    "brier",
    "calibration_curve",
    "calibration_intercept",
    "calibration_slope",
    "evaluate",
    "evaluate_periods",
    "headline",
    "roc_points",
    "observed_expected",
    "prevalence",
    "against_realised",
    "realised_metrics",
]

OK = STATUS_OK
_ERR_ONE_CLASS = "insufficient data: only one outcome class ({n_pos} events, {n_neg} non-events)"
_ERR_TOO_FEW = "insufficient data: {n} records (need at least {min_n})"
_ERR_FEW_PER_CLASS = "insufficient data: {n_pos} events and {n_neg} non-events (need at least {k} of each)"
_MIN_BOOTSTRAP_N = 10
_MIN_EVENTS_FOR_SLOPE = 10


@dataclass(frozen=True)
class Estimate:
    """A metric with its confidence interval."""

    metric: str
    value: float
    lower: float
    upper: float
    method: str
    n: int
    status: str = OK

    @property
    def ok(self) -> bool:
        return self.status == OK

    def as_dict(self) -> dict:
        return asdict(self)


def _missing(metric: str, method: str, n: int, status: str) -> Estimate:
    return Estimate(metric=metric, value=math.nan, lower=math.nan, upper=math.nan, method=method, n=n, status=status)


def _arrays(y, risk) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    risk = np.asarray(risk, dtype=float)
    if y.shape != risk.shape:
        raise ValueError(f"y and risk differ in length: {y.shape[0]} outcomes, {risk.shape[0]} predictions.")
    keep = ~(np.isnan(y) | np.isnan(risk))
    y, risk = y[keep], risk[keep]
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("y must hold 0/1 outcomes.")
    return y.astype(np.int8), risk


def _class_problem(y: np.ndarray, min_n: int = 2, min_per_class: int = 1) -> str | None:
    if y.size < min_n:
        return _ERR_TOO_FEW.format(n=y.size, min_n=min_n)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return _ERR_ONE_CLASS.format(n_pos=n_pos, n_neg=y.size - n_pos)
    if min(n_pos, y.size - n_pos) < min_per_class:
        return _ERR_FEW_PER_CLASS.format(n_pos=n_pos, n_neg=y.size - n_pos, k=min_per_class)
    return None


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


# ------------------------------------------------------------------ discrimination


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and DeLong's structural components V10 (per event) and V01 (per non-event)."""
    pos, neg = scores[y == 1], scores[y == 0]
    m, n = pos.size, neg.size
    rank_all = stats.rankdata(np.concatenate([pos, neg]))
    rank_pos, rank_neg = stats.rankdata(pos), stats.rankdata(neg)
    v10 = (rank_all[:m] - rank_pos) / n
    v01 = 1.0 - (rank_all[m:] - rank_neg) / m
    auc = float(v10.mean())
    return auc, v10, v01


def auroc(y, risk, *, confidence: float = 0.95) -> Estimate:
    """Area under the ROC curve with a DeLong confidence interval (logit-transformed,
    so the interval stays inside [0, 1])."""
    y, risk = _arrays(y, risk)
    problem = _class_problem(y, min_per_class=2)
    if problem:
        return _missing("AUROC", "DeLong", y.size, problem)
    auc, v10, v01 = _delong_components(y, risk)
    var = v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size
    z = _z(confidence)
    if auc <= 0 or auc >= 1 or var <= 0:
        lower, upper = auc, auc
    else:
        logit = math.log(auc / (1 - auc))
        se = math.sqrt(var) / (auc * (1 - auc))
        lower, upper = (1 / (1 + math.exp(-(logit + s * z * se))) for s in (-1, 1))
    return Estimate(metric="AUROC", value=auc, lower=lower, upper=upper, method="DeLong", n=y.size)


@dataclass(frozen=True)
class PairedDifference:
    """Difference between two models' AUROC on the same records (``new - old``)."""

    difference: float
    lower: float
    upper: float
    p_value: float
    auroc_new: float
    auroc_old: float
    n: int
    method: str = "paired DeLong"
    status: str = OK


def auroc_difference(y, risk_new, risk_old, *, confidence: float = 0.95) -> PairedDifference:
    """Paired DeLong test of ``AUROC(new) - AUROC(old)`` on the same records."""
    y, risk_new = _arrays(y, risk_new)
    _, risk_old = _arrays(np.asarray(y, dtype=float), risk_old)
    problem = _class_problem(y, min_per_class=2)
    if problem:
        nan = math.nan
        return PairedDifference(nan, nan, nan, nan, nan, nan, int(y.size), status=problem)
    a1, v10_1, v01_1 = _delong_components(y, risk_new)
    a0, v10_0, v01_0 = _delong_components(y, risk_old)
    s10 = np.cov(np.vstack([v10_1, v10_0]))
    s01 = np.cov(np.vstack([v01_1, v01_0]))
    cov = s10 / v10_1.size + s01 / v01_1.size
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = a1 - a0
    se = math.sqrt(max(var, 0.0))
    z = _z(confidence)
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return PairedDifference(diff, diff - z * se, diff + z * se, p, a1, a0, int(y.size))


_RESAMPLE_CELLS = 1_000_000  # resampled records held at once (resamples x records), so memory stays bounded


def _average_precision_terms(y: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per record: its position among the distinct risks (highest first) and 1 if an event.

    Average precision of any resample depends only on how many events and non-events it
    draws at each distinct risk, so the sort happens once, not once per resample."""
    distinct, group = np.unique(risk, return_inverse=True)
    return (distinct.size - 1 - group).astype(np.intp), (y == 1)


def _resampled_average_precision(group: np.ndarray, event: np.ndarray, n_groups: int, rows: np.ndarray) -> np.ndarray:
    """``sklearn.metrics.average_precision_score`` of each resample (a row of record indices).

    The same arithmetic as scikit-learn, in the same order, so every value is the same
    float: cumulative events (``tps``) and records (``ps``) at each distinct risk present
    in the resample, highest risk first; ``precision = tps / ps``, ``recall = tps / tps[-1]``;
    the step integral summed from the lowest risk up. NaN where a resample has one class."""
    b, n = rows.shape
    cell = (np.arange(b, dtype=np.intp)[:, None] * n_groups + group[rows]).ravel()
    drawn = np.bincount(cell, minlength=b * n_groups).reshape(b, n_groups)
    events = np.bincount(cell[event[rows].ravel()], minlength=b * n_groups).reshape(b, n_groups)
    tps = np.cumsum(events, axis=1).astype(np.float64)
    ps = np.cumsum(drawn, axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(ps != 0, tps / ps, 0.0)
        recall = tps / tps[:, -1:]
    previous = np.concatenate([np.zeros((b, 1)), recall[:, :-1]], axis=1)
    # lowest risk first, as scikit-learn sums: diff(recall reversed) * precision reversed
    terms = ((previous - recall) * precision)[:, ::-1]
    present = (drawn > 0)[:, ::-1]
    out = np.empty(b)
    n_events = tps[:, -1]
    for i in range(b):
        if n_events[i] == 0 or n_events[i] == n:
            out[i] = np.nan
        else:
            out[i] = max(0.0, -float(np.sum(np.ascontiguousarray(terms[i][present[i]]))))
    return out


def _resampled_brier(y: np.ndarray, risk: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``sklearn.metrics.brier_score_loss`` of each resample, the same float: scikit-learn
    scores the one-hot pair ``(1 - y, y)`` against ``(1 - risk, risk)`` and halves the mean."""
    yf = y.astype(np.float64)
    per_record = np.sum((np.stack((1 - yf, yf), axis=1) - np.stack((1 - risk, risk), axis=1)) ** 2, axis=1)
    return per_record[rows].mean(axis=1) * 0.5


def _bootstrap_distribution(metric: str, y: np.ndarray, risk: np.ndarray, *, n_bootstrap: int, seed: int) -> np.ndarray:
    """The metric on each of ``n_bootstrap`` paired resamples, computed in blocks.

    The resamples are those ``scipy.stats.bootstrap(..., paired=True,
    random_state=default_rng(seed))`` draws (one ``integers(0, n, (n_bootstrap, n))``
    call; drawing it block by block gives the same indices), and each value equals the
    scikit-learn metric on that resample, so the interval is the one scipy would give,
    without a Python call per resample."""
    n = y.size
    rng = np.random.default_rng(seed)
    block = max(1, _RESAMPLE_CELLS // n)
    out = np.empty(n_bootstrap)
    if metric == "AUPRC":
        group, event = _average_precision_terms(y, risk)
        n_groups = int(group.max()) + 1
    for start in range(0, n_bootstrap, block):
        stop = min(start + block, n_bootstrap)
        rows = rng.integers(0, n, (stop - start, n))
        out[start:stop] = (_resampled_average_precision(group, event, n_groups, rows) if metric == "AUPRC"
                           else _resampled_brier(y, risk, rows))
    return out


def _bootstrap(metric: str, fn: Callable[[np.ndarray, np.ndarray], float], y, risk, *,
               confidence: float, n_bootstrap: int, seed: int, needs_both_classes: bool) -> Estimate:
    y, risk = _arrays(y, risk)
    problem = (_class_problem(y, min_n=_MIN_BOOTSTRAP_N) if needs_both_classes
               else (None if y.size >= _MIN_BOOTSTRAP_N else _ERR_TOO_FEW.format(n=y.size, min_n=_MIN_BOOTSTRAP_N)))
    if problem:
        return _missing(metric, "bootstrap", y.size, problem)
    value = float(fn(y, risk))
    theta = _bootstrap_distribution(metric, y, risk, n_bootstrap=n_bootstrap, seed=seed)
    # scipy.stats.bootstrap's percentile interval: quantiles at alpha and 1 - alpha
    alpha = np.asarray((1 - float(confidence)) / 2, dtype=np.float64)
    ci = stats.quantile(theta, np.stack((alpha, 1 - alpha), axis=-1), axis=-1)
    if np.isnan(ci).any():
        warnings.warn(stats.DegenerateDataWarning(_DEGENERATE), stacklevel=2)
    lower, upper = float(ci[0]), float(ci[1])
    return Estimate(metric=metric, value=value, lower=lower, upper=upper, method=f"percentile bootstrap ({n_bootstrap})", n=y.size)


_DEGENERATE = ("The BCa confidence interval cannot be calculated. This problem is known to occur when the "
               "distribution is degenerate or the statistic is np.min.")  # scipy's wording, kept for identical records


def auprc(y, risk, *, confidence: float = 0.95, n_bootstrap: int = 1000, seed: int = 0) -> Estimate:
    """Area under the precision-recall curve (average precision), bootstrap CI."""
    return _bootstrap("AUPRC", average_precision_score, y, risk, confidence=confidence,
                      n_bootstrap=n_bootstrap, seed=seed, needs_both_classes=True)


def brier(y, risk, *, confidence: float = 0.95, n_bootstrap: int = 1000, seed: int = 0) -> Estimate:
    """Brier score (mean squared error of the predicted risk; lower is better), bootstrap CI."""
    return _bootstrap("Brier", brier_score_loss, y, risk, confidence=confidence,
                      n_bootstrap=n_bootstrap, seed=seed, needs_both_classes=False)


def prevalence(y, *, confidence: float = 0.95) -> Estimate:
    """Outcome rate with a Wilson score interval."""
    y = np.asarray(y, dtype=float)
    y = y[~np.isnan(y)]
    if y.size == 0:
        return _missing("prevalence", "Wilson", 0, _ERR_TOO_FEW.format(n=0, min_n=1))
    k = int(y.sum())
    ci = stats.binomtest(k, y.size).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(metric="prevalence", value=k / y.size, lower=float(ci.low), upper=float(ci.high), method="Wilson", n=int(y.size))


# ------------------------------------------------------------------ calibration




def _glm(y: np.ndarray, exog: np.ndarray, offset: np.ndarray | None, cov_type: str = "nonrobust"):
    import statsmodels.api as sm

    return sm.GLM(y, exog, family=sm.families.Binomial(), offset=offset).fit(cov_type=cov_type)


def calibration_slope(y, risk, *, confidence: float = 0.95) -> Estimate:
    """Calibration slope: the coefficient of ``logit(risk)`` in a logistic regression of
    the outcome on it (1 = ideal; < 1 means predictions are too extreme). Needs at least
    10 events and 10 non-events; fewer give "insufficient data"."""
    y, risk = _arrays(y, risk)
    # below ~10 events the slope's sampling distribution is far from its Wald approximation
    problem = _class_problem(y, min_n=3, min_per_class=_MIN_EVENTS_FOR_SLOPE)
    if problem:
        return _missing("calibration slope", "logistic recalibration (Wald)", y.size, problem)
    lp = logit(risk)
    if np.ptp(lp) == 0:
        return _missing("calibration slope", "logistic recalibration (Wald)", y.size, "insufficient data: all predicted risks are equal")
    fit = _glm(y, np.column_stack([np.ones_like(lp), lp]), None)
    low, high = fit.conf_int(alpha=1 - confidence)[1]
    return Estimate(metric="calibration slope", value=float(fit.params[1]), lower=float(low), upper=float(high),
                    method="logistic recalibration (Wald)", n=y.size)


_INTERCEPT_METHOD = "logistic, logit(risk) offset (robust SE)"


def calibration_intercept(y, risk, *, confidence: float = 0.95) -> Estimate:
    """Calibration-in-the-large: the intercept of a logistic regression of the outcome
    with ``logit(risk)`` as offset (0 = ideal; < 0 means risk is over-predicted).

    The interval uses the sandwich (HC0) standard error,
    ``sqrt(sum (y - mu)^2) / sum mu (1 - mu)``: the offset model fixes the slope at 1, so
    its model-based SE is wrong whenever the true slope is not 1."""
    y, risk = _arrays(y, risk)
    problem = _class_problem(y, min_n=2)
    if problem:
        return _missing("calibration intercept", _INTERCEPT_METHOD, y.size, problem)
    fit = _glm(y, np.ones((y.size, 1)), logit(risk), cov_type="HC0")
    low, high = fit.conf_int(alpha=1 - confidence)[0]
    return Estimate(metric="calibration intercept", value=float(fit.params[0]), lower=float(low), upper=float(high),
                    method=_INTERCEPT_METHOD, n=y.size)


def observed_expected(y, risk, *, confidence: float = 0.95) -> Estimate:
    """Observed / expected events (1 = ideal; < 1 means risk is over-predicted)."""
    y, risk = _arrays(y, risk)
    observed, expected = float(y.sum()), float(risk.sum())
    method = "delta method on log(O/E)"
    if y.size == 0 or expected == 0:
        return _missing("O/E", method, y.size, _ERR_TOO_FEW.format(n=y.size, min_n=1))
    if observed == 0:
        # no event where some were expected is evidence, not a gap: O/E is 0 and the exact
        # (Garwood) Poisson bound for a count of 0 gives the upper limit
        upper = float(stats.chi2.ppf(0.5 + confidence / 2, 2)) / 2 / expected
        return Estimate(metric="O/E", value=0.0, lower=0.0, upper=upper, method="exact Poisson bound (no events)", n=y.size)
    ratio = observed / expected
    se = math.sqrt((1 - observed / y.size) / observed)
    z = _z(confidence)
    return Estimate(metric="O/E", value=ratio, lower=ratio * math.exp(-z * se), upper=ratio * math.exp(z * se), method=method, n=y.size)


@dataclass(frozen=True)
class CalibrationCurve:
    """Observed outcome rate per bin of predicted risk, with Wilson intervals."""

    table: pd.DataFrame  # columns: bin, n, mean_predicted, observed, lower, upper


def calibration_curve(y, risk, *, n_bins: int = 10, confidence: float = 0.95, min_cell_size: int = 11) -> CalibrationCurve:
    """Quantile bins of predicted risk; bins smaller than ``min_cell_size`` are merged
    into their neighbour so no plotted point rests on fewer patients than that."""
    from clinval.privacy import bin_index, pooled_bin_edges

    y, risk = _arrays(y, risk)
    idx = bin_index(risk, pooled_bin_edges(risk, n_bins=n_bins, min_cell_size=min_cell_size))
    rows = []
    for b in np.unique(idx):
        sel = idx == b
        k, n = int(y[sel].sum()), int(sel.sum())
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        rows.append({"bin": int(b), "n": n, "mean_predicted": float(risk[sel].mean()), "observed": k / n,
                     "lower": float(ci.low), "upper": float(ci.high)})
    return CalibrationCurve(table=pd.DataFrame(rows))


def evaluate(y, risk, *, confidence: float = 0.95, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """All discrimination and calibration metrics as one tidy table (one row each).

    Memoised (:mod:`clinval.memo`) under the content hash of the outcomes, risks and
    settings: a period whose records did not change is read back, not re-bootstrapped,
    and the table is the same either way."""
    y, risk = _arrays(y, risk)
    key = memo.digest(y, risk, float(confidence), int(n_bootstrap), int(seed), source=__file__)
    return memo.memoised_table("performance.evaluate", key,
                               lambda: _evaluate(y, risk, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed))


def _evaluate(y: np.ndarray, risk: np.ndarray, *, confidence: float, n_bootstrap: int, seed: int) -> pd.DataFrame:
    estimates = [
        auroc(y, risk, confidence=confidence),
        auprc(y, risk, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed),
        brier(y, risk, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed),
        calibration_slope(y, risk, confidence=confidence),
        calibration_intercept(y, risk, confidence=confidence),
        observed_expected(y, risk, confidence=confidence),
    ]
    return pd.DataFrame([e.as_dict() for e in estimates])


# ------------------------------------------------------------------ label-free (CBPE)


CBPE_METRICS = ("AUROC", "prevalence", "Brier", "sensitivity", "specificity")
"""Label-free estimates; sensitivity and specificity only when an operating threshold is given."""
_SPLINE_KNOTS = 4  # cubic B-spline on logit(risk), knots at reference quantiles: 6 coefficients
_MIN_CLASS_FOR_SPLINE = 60  # events and non-events each (~10 per coefficient); fewer: straight recalibration
_SIMULATION_CELLS = 4_000_000  # simulations x patients per block, so memory stays bounded
_MIN_DEFINED = 0.9  # share of simulations in which a metric must be defined to give an interval
_ERR_CALIBRATOR = "insufficient data: the recalibration model could not be fitted ({reason})"


def _calibration_basis(spline: SplineTransformer | None, lp: np.ndarray) -> np.ndarray:
    """Design matrix of the recalibration model: B-spline of logit(risk), or (1, logit(risk))."""
    if spline is None:
        return np.column_stack([np.ones_like(lp), lp])
    return spline.transform(lp[:, None])  # B-splines sum to 1: the intercept is implicit


def _outcome_metrics(outcomes: np.ndarray, risk: np.ndarray, ranks: np.ndarray,
                     selected: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every CBPE metric for each row of 0/1 ``outcomes`` (rows = simulated or realised periods)."""
    y = outcomes.astype(np.float64)
    n = y.shape[1]
    n1 = y.sum(axis=1)
    n0 = n - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "AUROC": (y @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0),  # Mann-Whitney with midranks: ties count 1/2
            "prevalence": n1 / n,
            "Brier": (float(np.sum(risk * risk)) + y @ (1 - 2 * risk)) / n,  # mean (risk - y)^2 with y^2 = y
        }
        if selected is not None:
            hits = y @ selected.astype(np.float64)
            out["sensitivity"] = hits / n1
            out["specificity"] = (n0 - (selected.sum() - hits)) / n0
    return out


def realised_metrics(y, risk, *, threshold: float | None = None) -> dict[str, float]:
    """The CBPE metrics on observed outcomes, computed exactly as for the simulated ones.

    Parameters
    ----------
    y, risk
        Outcomes (0/1, missing ones dropped) and predicted risks.
    threshold
        Operating threshold: sensitivity and specificity of ``risk >= threshold``.

    Returns
    -------
    dict
        Metric name -> value (NaN where undefined, e.g. AUROC with one outcome class).
    """
    y, risk = _arrays(y, risk)
    if y.size == 0:
        return {m: math.nan for m in CBPE_METRICS[: 5 if threshold is not None else 3]}
    selected = None if threshold is None else risk >= threshold
    values = _outcome_metrics(y[None, :].astype(bool), risk, stats.rankdata(risk), selected)
    return {m: float(v[0]) for m, v in values.items()}


@dataclass(frozen=True, eq=False)
class PerformanceEstimator:
    """Confidence-based performance estimation (CBPE).

    Fitted on labelled reference data, it maps raw predicted risk to calibrated risk: a
    logistic regression on a cubic B-spline of ``logit(risk)`` (knots at reference
    quantiles; a straight logistic recalibration when either class has fewer than 60
    patients). For a period without labels it reports the performance the model would
    have *if* outcomes followed the calibrated risk, with an interval for the realised
    value that includes the calibrator's own sampling error. It detects decay that comes
    from a changed case mix (covariate shift); it cannot see a changed relation between
    features and outcome (concept shift): a realised value outside the interval, once the
    labels arrive, is the evidence of that.

    Attributes
    ----------
    spline : SplineTransformer or None
        The B-spline basis of ``logit(risk)``; None for the straight recalibration.
    coefficients, covariance : numpy.ndarray
        Recalibration coefficients and their (model-based) covariance.
    n_reference : int
        Labelled reference records the calibrator rests on.
    status : str
        ``"ok"`` or ``"insufficient data: <reason>"`` (then every estimate says so).
    """

    spline: SplineTransformer | None
    coefficients: np.ndarray
    covariance: np.ndarray
    n_reference: int
    status: str = OK

    @classmethod
    def fit(cls, y, risk) -> PerformanceEstimator:
        """Fit the recalibration model on labelled reference outcomes ``y`` and risks."""
        from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

        y, risk = _arrays(y, risk)
        empty = (np.empty(0), np.empty((0, 0)))
        problem = _class_problem(y, min_n=3, min_per_class=2)
        if problem:
            return cls(None, *empty, int(y.size), problem)
        lp = logit(risk)
        spline = None
        if min(int(y.sum()), int(y.size - y.sum())) >= _MIN_CLASS_FOR_SPLINE and np.unique(lp).size > 4 * _SPLINE_KNOTS:
            spline = SplineTransformer(n_knots=_SPLINE_KNOTS, degree=3, knots="quantile", extrapolation="linear").fit(lp[:, None])
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            fit = _glm(y, _calibration_basis(spline, lp), None)
        coefficients, covariance = np.asarray(fit.params), np.asarray(fit.cov_params())
        if any(issubclass(w.category, PerfectSeparationWarning) for w in caught):
            return cls(None, *empty, int(y.size), _ERR_CALIBRATOR.format(reason="risk separates the outcomes"))
        if not (np.isfinite(coefficients).all() and np.isfinite(covariance).all()):
            return cls(None, *empty, int(y.size), _ERR_CALIBRATOR.format(reason="no finite solution"))
        return cls(spline, coefficients, covariance, int(y.size))

    @property
    def method(self) -> str:
        kind = "straight logistic" if self.spline is None else "spline-logistic"
        return f"CBPE ({kind} recalibration on {self.n_reference} reference records, with its uncertainty)"

    def calibrated(self, risk) -> np.ndarray:
        """Calibrated risk for raw predicted ``risk`` (the point estimate of the calibrator)."""
        return expit(_calibration_basis(self.spline, logit(np.asarray(risk, dtype=float))) @ self.coefficients)

    def estimate(self, risk, *, threshold: float | None = None, confidence: float = 0.95,
                 n_simulations: int = 500, seed: int = 0) -> pd.DataFrame:
        """Expected metrics for unlabelled ``risk``, with intervals for their realised values.

        Parameters
        ----------
        risk
            Predicted risks of one period (missing ones dropped).
        threshold
            Operating threshold; adds sensitivity and specificity of ``risk >= threshold``.
        confidence
            Level of the interval.
        n_simulations
            Simulated periods: calibrator coefficients drawn from their sampling
            distribution, then outcomes drawn from the calibrated risk.
        seed
            Seed of the simulation (the same seed gives the same intervals).

        Returns
        -------
        pandas.DataFrame
            One row per metric (:data:`CBPE_METRICS`), columns of :class:`Estimate`.
            ``value`` is the expected metric under the point calibrator (AUROC as a ratio
            of expected pair counts); ``lower``/``upper`` bound the realised value.
            Memoised (:mod:`clinval.memo`) under the content hash of the calibrator, the
            risks and the settings; the table is the same whether computed or read.
        """
        risk = np.asarray(risk, dtype=float)
        risk = risk[~np.isnan(risk)]
        knots = None if self.spline is None else (self.spline.bsplines_[0].t, repr(self.spline.get_params()))
        key = memo.digest(self.coefficients, self.covariance, knots, self.n_reference, self.status, risk,
                          None if threshold is None else float(threshold), float(confidence), int(n_simulations),
                          int(seed), source=__file__)
        return memo.memoised_table("performance.cbpe", key, lambda: self._estimate(
            risk, threshold=threshold, confidence=confidence, n_simulations=n_simulations, seed=seed))

    def _estimate(self, risk: np.ndarray, *, threshold: float | None, confidence: float, n_simulations: int,
                  seed: int) -> pd.DataFrame:
        metrics = CBPE_METRICS if threshold is not None else CBPE_METRICS[:3]
        problem = self.status if self.status != OK else (
            _ERR_TOO_FEW.format(n=risk.size, min_n=2) if risk.size < 2 else None)
        if problem:
            return pd.DataFrame([_missing(m, "CBPE", int(risk.size), problem).as_dict() for m in metrics])
        basis = _calibration_basis(self.spline, logit(risk))
        p = expit(basis @ self.coefficients)
        rng = np.random.default_rng(seed)
        draws = self.coefficients + rng.standard_normal((n_simulations, self.coefficients.size)) @ _root(self.covariance).T
        ranks = stats.rankdata(risk)
        selected = None if threshold is None else risk >= threshold
        sims = {m: np.empty(n_simulations) for m in metrics}
        block = max(1, _SIMULATION_CELLS // risk.size)
        for start in range(0, n_simulations, block):
            stop = min(start + block, n_simulations)
            outcomes = rng.random((stop - start, risk.size)) < expit(draws[start:stop] @ basis.T)
            for m, values in _outcome_metrics(outcomes, risk, ranks, selected).items():
                sims[m][start:stop] = values
        point = {"AUROC": _expected_auroc(risk, p), "prevalence": float(p.mean()),
                 "Brier": float(np.mean(p * (1 - risk) ** 2 + (1 - p) * risk**2))}
        if selected is not None:
            point["sensitivity"] = float(np.sum(p * selected) / np.sum(p))
            point["specificity"] = float(np.sum((1 - p) * ~selected) / np.sum(1 - p))
        alpha = (1 - confidence) / 2
        rows = []
        for metric in metrics:
            values = sims[metric][np.isfinite(sims[metric])]
            if values.size < _MIN_DEFINED * n_simulations:
                reason = f"insufficient data: {metric} is undefined in most simulated periods (too few events or non-events)"
                rows.append(_missing(metric, self.method, int(risk.size), reason).as_dict())
                continue
            lower, upper = np.quantile(values, [alpha, 1 - alpha])
            rows.append(Estimate(metric=metric, value=point[metric], lower=float(lower), upper=float(upper),
                                 method=self.method, n=int(risk.size)).as_dict())
        return pd.DataFrame(rows)


def against_realised(estimates: pd.DataFrame, realised: dict[str, float] | None) -> pd.DataFrame:
    """Label-free estimates next to the realised values, with the verdict.

    Parameters
    ----------
    estimates
        Output of :meth:`PerformanceEstimator.estimate`.
    realised
        Output of :func:`realised_metrics` on the period's outcomes, or None when the
        labels have not arrived.

    Returns
    -------
    pandas.DataFrame
        ``estimates`` with ``realised`` (NaN without labels) and ``outside``: True when
        the realised value lies outside the interval (under pure case-mix change this
        happens ``1 - confidence`` of the time per metric), False inside, None when there
        is nothing to compare.
    """
    out = estimates.copy()
    out["realised"] = [(realised or {}).get(m, math.nan) for m in out["metric"]]
    comparable = out["realised"].notna() & out["lower"].notna() & out["upper"].notna()
    beyond = (out["realised"] < out["lower"]) | (out["realised"] > out["upper"])
    out["outside"] = pd.Series([bool(b) if c else None for b, c in zip(beyond, comparable)], index=out.index, dtype=object)
    return out


def _root(covariance: np.ndarray) -> np.ndarray:
    """A matrix square root ``R`` with ``R R^T = covariance`` (Cholesky; eigenvalues clipped if needed)."""
    try:
        return np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(covariance)
        return vectors * np.sqrt(np.clip(values, 0.0, None))


def _expected_auroc(scores: np.ndarray, p: np.ndarray) -> float:
    """E[AUROC] when each label is Bernoulli(p_i), as a ratio of expected pair counts:
    sum_{i != j} p_i (1 - p_j) [s_i > s_j] (ties count 1/2) over sum_{i != j} p_i (1 - p_j)."""
    order = np.argsort(scores, kind="stable")
    s, p = scores[order], p[order]
    q = 1 - p
    # for each i: sum of q_j over j with s_j < s_i, plus half of q_j over ties j != i
    uniq, start = np.unique(s, return_index=True)
    cum_q = np.concatenate([[0.0], np.cumsum(q)])
    group = np.searchsorted(uniq, s)
    end = np.append(start[1:], s.size)
    below = cum_q[start[group]]
    tied = cum_q[end[group]] - cum_q[start[group]] - q
    concordant = float(np.sum(p * (below + 0.5 * tied)))
    total = float(p.sum() * q.sum() - np.sum(p * q))
    return concordant / total


def roc_points(y, risk, *, n_points: int = 20) -> pd.DataFrame:
    """Sensitivity and 1 - specificity at risk quantiles (so no point marks one patient)."""
    y, risk = _arrays(y, risk)
    thresholds = np.unique(np.quantile(risk, np.linspace(0, 1, n_points + 1)))
    pos, neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    rows = [{"threshold": float(t), "tpr": float(((risk >= t) & (y == 1)).sum() / pos),
             "fpr": float(((risk >= t) & (y == 0)).sum() / neg)} for t in thresholds[::-1]]
    return pd.DataFrame([{"threshold": 1.0, "tpr": 0.0, "fpr": 0.0}, *rows, {"threshold": 0.0, "tpr": 1.0, "fpr": 1.0}])


def headline(table: pd.DataFrame) -> str:
    """One sentence summarising an :func:`evaluate` table for the record index."""
    by_metric = table.set_index("metric")
    parts = []
    for metric in ("AUROC", "calibration slope", "O/E"):
        if metric in by_metric.index and by_metric.loc[metric, "status"] == OK:
            r = by_metric.loc[metric]
            parts.append(f"{metric} {r['value']:.2f} ({r['lower']:.2f}-{r['upper']:.2f})")
    return ", ".join(parts) if parts else "performance not estimable"


LABELS_PENDING = "insufficient data: labels not yet available"


def evaluate_periods(log: pd.DataFrame, *, periods: list[str] | tuple[str, ...] | None = None,
                     unlabelled: tuple[str, ...] = (), confidence: float = 0.95, n_bootstrap: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """:func:`evaluate` for every period of a prediction log, in period order.

    Periods listed in ``unlabelled`` are treated as if their outcomes had not arrived:
    every metric says so in ``status``; use :class:`PerformanceEstimator` for them.
    """
    periods = list(periods) if periods is not None else list(pd.unique(log["period"]))
    tables = []
    for period in periods:
        rows = log[log["period"] == period]
        if period in unlabelled or rows["label"].isna().all():
            table = evaluate(np.array([]), np.array([]), n_bootstrap=n_bootstrap).assign(status=LABELS_PENDING, n=len(rows))
        else:
            table = evaluate(rows["label"], rows["predicted_risk"], confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)
        tables.append(table.assign(period=period))
    out = pd.concat(tables, ignore_index=True)
    return out[["period", *[c for c in out.columns if c != "period"]]]


# ------------------------------------------------------------------ monitored metrics, resampled at once


@dataclass(frozen=True)
class PeriodMetric:
    """A metric charted per period (:mod:`clinval.spc`): ``metric(frame)`` gives one
    period's value; ``metric.resampled(frame, rows)`` gives it for many resamples of the
    frame's records at once (``rows``: one row of record positions per resample), each
    the same float the call on that resample gives, without a frame per resample.

    ``name`` is one of :data:`PERIOD_METRICS`: ``"mean predicted risk"``, ``"O/E"``
    (:func:`observed_expected`), ``"AUROC"`` (:func:`auroc`); NaN where undefined.
    """

    name: str

    def __post_init__(self):
        if self.name not in PERIOD_METRICS:
            raise ValueError(f"unknown period metric {self.name!r}; one of {', '.join(PERIOD_METRICS)}")

    def __call__(self, frame: pd.DataFrame) -> float:
        if self.name == "mean predicted risk":
            return float(frame["predicted_risk"].mean())
        if self.name == "O/E":
            return observed_expected(frame["label"], frame["predicted_risk"]).value
        return auroc(frame["label"], frame["predicted_risk"]).value

    def resampled(self, frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        risk = frame["predicted_risk"].to_numpy(dtype=float)
        label = frame["label"].to_numpy(dtype=float) if self.name != "mean predicted risk" else np.zeros(risk.size)
        if np.isnan(risk).any() or np.isnan(label).any():  # missing values: each resample drops its own
            return np.array([self(frame.iloc[r]) for r in rows], dtype=float)
        if self.name == "mean predicted risk":
            return risk[rows].sum(axis=1) / rows.shape[1]  # pandas' mean: sum / count
        y = label.astype(np.int8)
        if self.name == "O/E":
            observed = y[rows].sum(axis=1).astype(np.float64)
            expected = risk[rows].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):  # as observed_expected: 0 events give 0, no expectation NaN
                return np.where(expected == 0, np.nan, observed / expected)
        return _resampled_auroc(y, risk, rows)


PERIOD_METRICS = ("mean predicted risk", "O/E", "AUROC")
"""Metrics :class:`PeriodMetric` computes (the control-charted ones)."""


def _resampled_auroc(y: np.ndarray, risk: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`auroc` values of each resample, the same floats: midranks from counts per
    distinct risk (``scipy.stats.rankdata``'s ``(below + at_or_below + 1) / 2``, exact in
    floating point), DeLong's ``V10`` per event in the resample's order, then its mean."""
    distinct, group = np.unique(risk, return_inverse=True)
    k = distinct.size
    b, n = rows.shape
    g = group[rows]
    event = y[rows] == 1
    cell = (np.arange(b, dtype=np.intp)[:, None] * k + g)
    at_all = np.bincount(cell.ravel(), minlength=b * k).reshape(b, k)
    at_pos = np.bincount(cell[event], minlength=b * k).reshape(b, k)

    def midranks(at: np.ndarray) -> np.ndarray:
        upto = np.cumsum(at, axis=1)
        return 0.5 * ((upto - at) + upto + 1).astype(np.float64)

    rank_all, rank_pos = midranks(at_all), midranks(at_pos)
    n_pos = event.sum(axis=1)
    out = np.full(b, np.nan)
    for i in range(b):
        m = int(n_pos[i])
        if min(m, n - m) < 2 or n < 2:  # auroc() needs two of each class
            continue
        gi = g[i][event[i]]
        v10 = (rank_all[i, gi] - rank_pos[i, gi]) / (n - m)
        out[i] = float(v10.mean())
    return out
