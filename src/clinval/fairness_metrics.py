"""The fairness audit's metrics, each with a score-type interval that cannot collapse to a
point in a small group, computed per group as fairlearn's
:class:`~fairlearn.metrics.MetricFrame` computes its cells (the tests hold the two equal),
and memoised per period.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from clinval import intervals, memo, performance
from clinval.fairness_groups import OVERALL_GROUP
from clinval.performance import OK, Estimate


METRICS = (
    "prevalence",
    "auroc",
    "sensitivity",
    "false_positive_rate",
    "ppv",
    "selection_rate",
    "observed_expected",
    "calibration_slope",
)
"""Per-group metrics, in the order tables show them."""


EQUALIZED_ODDS = "equalized_odds"
METRIC_LABELS = {
    "prevalence": "outcome prevalence",
    "auroc": "AUROC",
    "sensitivity": "sensitivity",
    "false_positive_rate": "false-positive rate",
    "ppv": "PPV",
    "selection_rate": "selection rate",
    "observed_expected": "observed/expected ratio",
    "calibration_slope": "calibration slope",
    EQUALIZED_ODDS: "equalized-odds difference",
}
"""How each metric is named in sentences and plot labels."""


DEFAULT_FLAG_METRICS = ("auroc", "sensitivity", "false_positive_rate", "ppv", "observed_expected",
                        "calibration_slope", EQUALIZED_ODDS)
"""Metrics whose disparities are flagged by default: not prevalence or selection rate."""


DIFFERENCE = "difference"
RATIO = "ratio"
_LABEL_METRICS = frozenset(METRICS) - {"selection_rate"}
LABELS_NOT_AVAILABLE = "insufficient data: labels not yet available"
"""Status of metrics that need outcomes, in a period whose labels have not arrived."""
_ERR_NO_LABELS_GROUP = "insufficient data: no outcome labels in this group yet"
_ERR_NO_EVENTS = "insufficient data: no events in this group, so {metric} is undefined"
_ERR_NO_NON_EVENTS = "insufficient data: no non-events in this group, so {metric} is undefined"
_ERR_SEPARATION = ("insufficient data: predicted risk separates events from non-events perfectly, "
                   "so the calibration slope is not identified")


_ERR_NONE_SELECTED = "insufficient data: no labelled patient at or above the threshold, so PPV is undefined"


def _labelled(y, *arrays):
    keep = ~np.isnan(np.asarray(y, dtype=float))
    return (np.asarray(y, dtype=float)[keep],) + tuple(np.asarray(a)[keep] for a in arrays)


def _estimate(metric: str, value: float, n: int, status: str = OK) -> Estimate:
    return Estimate(metric=metric, value=float(value) if status == OK else math.nan, lower=math.nan,
                    upper=math.nan, method="point", n=int(n), status=status)


def _rate(metric: str, value: float, count: int, total: int, n: int, confidence: float) -> Estimate:
    """A rate ``count / total`` (from ``n`` patients) with its Wilson interval."""
    lower, upper = intervals.rate_interval(int(count), int(total), confidence=confidence)
    return Estimate(metric=metric, value=float(value), lower=lower, upper=upper, method="Wilson", n=int(n))


def _m_prevalence(y_true, y_pred, *, confidence: float) -> Estimate:
    return performance.prevalence(y_true, confidence=confidence)


def _m_auroc(y_true, y_pred, risk, *, confidence: float) -> Estimate:
    est = performance.auroc(y_true, risk, confidence=confidence)
    if not est.ok:
        return est
    y, _ = _labelled(y_true, risk)
    n_events = int((y == 1).sum())
    # DeLong's interval collapses to [1, 1] at AUROC 1, common in small groups; the score interval cannot
    lower, upper = intervals.auroc_interval(est.value, n_events=n_events, n_non_events=y.size - n_events,
                                            confidence=confidence)
    return Estimate(metric=est.metric, value=est.value, lower=lower, upper=upper, method="Newcombe score", n=est.n)


def _m_sensitivity(y_true, y_pred, *, confidence: float) -> Estimate:
    y, d = _labelled(y_true, y_pred)
    events = y == 1
    if not events.any():
        return _estimate("sensitivity", math.nan, y.size, _ERR_NO_EVENTS.format(metric="sensitivity"))
    value = true_positive_rate(y.astype(int), d.astype(int), pos_label=1)
    return _rate("sensitivity", value, (d[events] == 1).sum(), events.sum(), y.size, confidence)


def _m_false_positive_rate(y_true, y_pred, *, confidence: float) -> Estimate:
    y, d = _labelled(y_true, y_pred)
    non_events = y == 0
    if not non_events.any():
        return _estimate("false_positive_rate", math.nan, y.size, _ERR_NO_NON_EVENTS.format(metric="the false-positive rate"))
    value = false_positive_rate(y.astype(int), d.astype(int), pos_label=1)
    return _rate("false_positive_rate", value, (d[non_events] == 1).sum(), non_events.sum(), y.size, confidence)


def _m_ppv(y_true, y_pred, *, confidence: float) -> Estimate:
    y, d = _labelled(y_true, y_pred)
    selected = d == 1
    if not selected.any():
        return _estimate("ppv", math.nan, y.size, _ERR_NONE_SELECTED)
    hits = int((y[selected] == 1).sum())
    return _rate("ppv", hits / selected.sum(), hits, selected.sum(), y.size, confidence)


def _m_selection_rate(y_true, y_pred, *, confidence: float) -> Estimate:
    d = np.asarray(y_pred)
    value = selection_rate(y_true, y_pred, pos_label=1)
    return _rate("selection_rate", value, (d == 1).sum(), d.size, d.size, confidence)


def _m_observed_expected(y_true, y_pred, risk, *, confidence: float) -> Estimate:
    return performance.observed_expected(y_true, risk, confidence=confidence)


def _m_calibration_slope(y_true, y_pred, risk, *, confidence: float) -> Estimate:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = performance.calibration_slope(y_true, risk, confidence=confidence)
    if est.ok and any(issubclass(w.category, PerfectSeparationWarning) for w in caught):
        return _estimate("calibration_slope", math.nan, est.n, _ERR_SEPARATION)
    return est


_CALLABLES = {
    "prevalence": _m_prevalence,
    "auroc": _m_auroc,
    "sensitivity": _m_sensitivity,
    "false_positive_rate": _m_false_positive_rate,
    "ppv": _m_ppv,
    "selection_rate": _m_selection_rate,
    "observed_expected": _m_observed_expected,
    "calibration_slope": _m_calibration_slope,
}


_NEEDS_RISK = ("auroc", "observed_expected", "calibration_slope")
_EQUALIZED_ODDS_PARTS = ("sensitivity", "false_positive_rate")


def _metric_frame(y: np.ndarray, risk: np.ndarray, decision: np.ndarray, groups: pd.Series,
                  confidence: float) -> MetricFrame:
    """fairlearn's MetricFrame over all metrics; cells hold :class:`Estimate` values with
    intervals. The audit computes the same cells with :func:`_estimate_table` (the tests
    hold the two equal); this is the reference."""
    return MetricFrame(
        metrics={m: partial(fn, confidence=confidence) for m, fn in _CALLABLES.items()},
        y_true=y,
        y_pred=decision.astype(int),
        sensitive_features=groups,
        sample_params={m: {"risk": risk} for m in _NEEDS_RISK},
    )


_ESTIMATE_COLUMNS = ("group", "metric", "name", "value", "lower", "upper", "method", "n", "status")


def _estimate_table(y: np.ndarray, risk: np.ndarray, decision: np.ndarray, groups: pd.Series,
                    confidence: float) -> pd.DataFrame:
    """Every metric of every group and of all records: the cells of :func:`_metric_frame`,
    each metric called on the group's rows as MetricFrame calls it (same arrays, dtypes
    and order), without MetricFrame's per-row ``np.stack`` of every column for every
    call (fairlearn 0.15: 29 of the audit's 40 s on 444,000 records)."""
    y, risk, predicted = np.asarray(y, dtype=float), np.asarray(risk, dtype=float), np.asarray(decision).astype(int)
    labels = groups.to_numpy()
    cells = {OVERALL_GROUP: np.arange(labels.size), **pd.Series(labels).groupby(labels, sort=True).indices}
    rows = []
    for g, rows_of_g in cells.items():
        for m in METRICS:
            extra = {"risk": risk[rows_of_g]} if m in _NEEDS_RISK else {}
            e = _CALLABLES[m](y[rows_of_g], predicted[rows_of_g], confidence=confidence, **extra)
            rows.append((str(g), m, e.metric, e.value, e.lower, e.upper, e.method, e.n, e.status))
    return pd.DataFrame(rows, columns=list(_ESTIMATE_COLUMNS)).astype({"value": float, "lower": float, "upper": float,
                                                                         "n": "int64"})


def group_estimates(y: np.ndarray, risk: np.ndarray, decision: np.ndarray, groups: pd.Series,
                    confidence: float) -> dict[str, dict[str, Estimate]]:
    """Every metric of every group (and of ``OVERALL_GROUP``, all records), with its interval.

    Memoised (:mod:`clinval.memo`) under the content hash of the outcomes, risks,
    decisions, group labels and confidence: a period whose records did not change is read
    back, not recomputed, and the estimates are the same either way.
    """
    labels = groups.astype(str).to_numpy()
    key = memo.digest("fairness.group_estimates", np.asarray(y, dtype=float), np.asarray(risk, dtype=float),
                      np.asarray(decision, dtype=bool), labels.astype("U"), float(confidence))
    table = memo.memoised_table("fairness.group_estimates", key,
                                lambda: _estimate_table(y, risk, decision, pd.Series(labels, name=groups.name), confidence))
    out: dict[str, dict[str, Estimate]] = {}
    for g, m, name, value, lower, upper, method, n, status in table.itertuples(index=False):
        out.setdefault(g, {})[m] = Estimate(metric=name, value=float(value), lower=float(lower), upper=float(upper),
                                            method=method, n=int(n), status=status)
    return out


def _rate_counts(y: np.ndarray, decision: np.ndarray) -> dict[str, tuple[int, int]]:
    """``(count, total)`` of sensitivity and false-positive rate, for the equalized-odds interval."""
    labelled = ~np.isnan(y)
    events, non_events = labelled & (y == 1), labelled & (y == 0)
    return {"sensitivity": (int((decision & events).sum()), int(events.sum())),
            "false_positive_rate": (int((decision & non_events).sum()), int(non_events.sum()))}
