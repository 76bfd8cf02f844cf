"""Fairness audit: model performance and calibration per patient group, with disparities.

A risk model can decay unevenly: well calibrated for men and over-predicting for women,
or losing sensitivity in the oldest age band only. This module measures each metric in
each group of each sensitive attribute (and of their intersection), compares every group
with a reference group, and says in plain words which gaps lie beyond the tolerance.

The audit is split along fairlearn's lines: groups (:mod:`clinval.fairness_groups`),
privacy (:mod:`clinval.fairness_suppression`), metrics with their intervals
(:mod:`clinval.fairness_metrics`), gaps and their sentences (:mod:`clinval.fairness_gaps`);
this module holds the settings, the results and the audit, and re-exports the public names.

Each metric is computed per group by calling it on the group's rows, exactly as
fairlearn's :class:`~fairlearn.metrics.MetricFrame` calls it (the tests hold every cell
equal to MetricFrame's; MetricFrame itself stacks every column row by row for every call,
29 of 40 s on 444,000 records). The metrics reuse :mod:`clinval.performance`
(prevalence, AUROC, O/E, calibration slope) and fairlearn's base metrics (sensitivity,
false-positive rate, selection rate), so the numbers agree with the rest of clinval. A
period's cells are memoised (:mod:`clinval.memo`): a new period computes only its own.

Public API
----------
``FairnessSettings``   thresholds and choices (one params key per field).
``band(values, *, edges, labels=None)``
    a numeric attribute (age) as bands; missing -> ``"unknown"``.
``sensitive_frame(log, *, attributes, bands)``
    the group columns of a prediction log: banded numeric attributes, missing values as
    ``"unknown"``, and the intersection of all attributes (``"sex × age_band"``).
``group_counts(groups, *, min_cell_size=11)``
    patients per group, with small-cell suppression applied jointly to every table
    published together (each attribute and the intersection).
``group_metrics(log, *, attribute, settings)``
    tidy table, one row per (group, metric): ``attribute, group, n, suppressed,
    metric, value, lower, upper, status``; the first rows are the whole period
    (``group == "all patients"``).
``disparities(log, *, attribute, settings)``
    tidy table, one row per (group, metric, measure): ``attribute, group,
    reference_group, metric, measure ("difference" | "ratio"), value, lower, upper,
    tolerance, flagged, status, sentence``; plus the equalized-odds difference.
``audit_over_time(log, *, attributes, bands, settings, periods=None)``
    :class:`FairnessAudit` for the reference period and every production period.
``to_json(audit)``
    every number the notebook shows, JSON-safe (NaN -> null, suppressed counts "<11").

Metrics (``METRICS``)
---------------------
``prevalence`` outcome rate; ``auroc``; ``sensitivity`` and ``false_positive_rate`` and
``ppv`` and ``selection_rate`` at ``settings.threshold`` (a patient is *selected* when
``predicted_risk >= threshold``); ``observed_expected`` (sum of outcomes / sum of risk);
``calibration_slope`` (logistic regression of outcome on logit(risk)). Selection rate
needs no labels; the others use the labelled patients only.

Confidence intervals
--------------------
Score-type intervals from :mod:`clinval.intervals`, which cannot collapse to a point in a
small group: Wilson for the rates (prevalence, sensitivity, false-positive rate, PPV,
selection rate), Newcombe's (2006) score interval for AUROC, the delta-method interval of
:func:`clinval.performance.observed_expected` for O/E and the Wald interval of
:func:`clinval.performance.calibration_slope`. A disparity's interval combines the two
groups' intervals by MOVER (for a difference of rates this is Newcombe's 1998 method 10;
MOVER-R for a ratio); the equalized-odds difference uses Bonferroni-adjusted component
intervals. Simulated with known truth (``bench/fairness_validity.py``), the intervals of a
group of 40 patients (about 11 events) cover the truth in 94-97% of periods, metric by
metric, and its gaps to a group of 400 with the same performance are flagged in at most
2.5% of comparisons (sensitivity: 0.5%); the percentile bootstrap used before covered the
sensitivity in 89% and flagged 6.7% (equalized odds 8.7%), because it collapsed to [1, 1]
whenever the small group's sample sensitivity was 1. No resampling: the audit is a pure
function of the data, and about twice as fast.

Why not ``MetricFrame(n_boot=...)``: fairlearn's bootstrap resamples the whole table and
has the same percentile-interval collapse in small groups.

Flagging
--------
A difference is flagged when its interval lies entirely beyond ``±tolerance_difference``;
a ratio when its interval lies entirely below ``tolerance_ratio`` or entirely above
``1 / tolerance_ratio``; the equalized-odds difference (the larger of the sensitivity
and false-positive-rate gaps) when its interval lies entirely above
``tolerance_difference``. Only metrics in ``settings.flag_metrics`` are flagged; by
default outcome prevalence (a property of the patients, not of the model) and selection
rate (which follows differences in true risk, which the model is meant to see) are
reported but not flagged. A gap whose interval holds both "no gap" and a gap beyond the
tolerance cannot be judged at this size: its sentence says so, and it is not flagged.

Small cells and bad input
-------------------------
A group with fewer than ``min_cell_size`` patients shows ``n = "<11"`` and no metrics;
complementary suppression (:func:`clinval.privacy.suppression_mask`) hides further
cells so that no hidden count can be recovered from the period total, another table
published with it, or the intersection's margins; a linear-algebra check then hides
more cells if any hidden count is still determined. A missing value of a sensitive
attribute is its own group, ``"unknown"``. A single group, a group with one outcome
class, or a period without labels gives a status and a note, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from clinval.errors import InputError
from clinval.disclosure import SUPPRESSED_RATE
from clinval.performance import OK, Estimate
from clinval.privacy import DEFAULT_MIN_CELL_SIZE, suppressed_label
from clinval.vocabulary import REFERENCE
from clinval.fairness_groups import (  # noqa: F401  (re-exported)
    INTERSECTION_SEPARATOR,
    OVERALL_GROUP,
    UNKNOWN,
    _ERR_COLUMN,
    _capitalise,
    _components,
    _describe,
    _group_column,
    _is_unknown,
    _order,
    band,
    sensitive_frame,
)
from clinval.fairness_suppression import (  # noqa: F401  (re-exported)
    SUPPRESSED_STATUS,
    _OUTCOME_CELLS,
    _outcome_suppression,
    _suppression,
    group_counts,
)
from clinval.fairness_metrics import (  # noqa: F401  (re-exported)
    DEFAULT_FLAG_METRICS,
    DIFFERENCE,
    EQUALIZED_ODDS,
    LABELS_NOT_AVAILABLE,
    METRICS,
    METRIC_LABELS,
    RATIO,
    _ERR_NO_LABELS_GROUP,
    _LABEL_METRICS,
    group_estimates,
    _rate_counts,
)
from clinval.fairness_gaps import (  # noqa: F401  (re-exported)
    _DISPARITY_COLUMNS,
    _disparities,
    _too_wide,
)

__all__ = [
    "DEFAULT_FLAG_METRICS",
    "DIFFERENCE",
    "EQUALIZED_ODDS",
    "INTERSECTION_SEPARATOR",
    "LABELS_NOT_AVAILABLE",
    "METRICS",
    "METRIC_LABELS",
    "OVERALL_GROUP",
    "RATIO",
    "REFERENCE_PERIOD",
    "SUPPRESSED_STATUS",
    "UNKNOWN",
    "FairnessAudit",
    "FairnessSettings",
    "FlaggedDisparity",
    "audit_over_time",
    "band",
    "disparities",
    "group_counts",
    "group_metrics",
    "sensitive_frame",
    "to_json",
]


REFERENCE_PERIOD = REFERENCE  # clinval.vocabulary
"""The ``period`` of the reference hold-out in the prediction log."""

_COLUMNS = ("label", "predicted_risk")

# statuses and sentences

# errors (programming or configuration mistakes, raised as ValueError)
_ERR_LOG_COLUMNS = "the prediction log needs columns {missing}; it has {columns}."
_ERR_REFERENCE_KEY = "reference_group names {keys}, which are not audited attributes ({attributes})."
_ERR_REFERENCE_GROUP = "reference group {group!r} of {attribute!r} does not occur in the log; groups are {groups}."
_ERR_SETTING = "FairnessSettings.{name} must be {rule}; got {value!r}."
_ERR_FLAG_METRIC = "FairnessSettings.flag_metrics: unknown metric(s) {unknown}; choose from {known}."
_ERR_PERIODS = "periods {missing} do not occur in the prediction log (its periods: {present})."
_ERR_EMPTY = "the prediction log has no rows."
_ERR_LABEL_VALUES = "column 'label' must hold 0, 1 or missing; found {values}."
_ERR_RISK_RANGE = "column 'predicted_risk' must lie in [0, 1]; found values from {low:g} to {high:g}."

# notes (plain-language statements of data problems, for the report)
_NOTE_UNKNOWN = "Missing values of {attribute} are counted as their own group, \"unknown\"."
_NOTE_ONE_CLASS = "{where}{who} has {what}, so {metrics} cannot be computed for it."
_NOTE_NO_LABELS = "{where}outcome labels have not arrived yet; only the selection rate is reported."
_NOTE_REFERENCE_CHOICE = "{attribute}: the reference group is {group} ({how})."


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True)
class FairnessSettings:
    """Thresholds and choices of the fairness audit (``params/fairness.yaml``)."""

    threshold: float
    """Operating threshold on predicted risk (0-1): a patient is selected when risk >= threshold."""
    tolerance_difference: float
    """Largest acceptable absolute gap to the reference group, in the metric's units (0.10 = 10 points)."""
    tolerance_ratio: float
    """Smallest acceptable ratio to the reference group (0.8: flagged below 0.8 or above 1/0.8)."""
    min_cell_size: int = DEFAULT_MIN_CELL_SIZE
    """Smallest group shown; smaller groups show "<11" and no metrics."""
    confidence: float = 0.95
    """Confidence level of every interval (0.95 = 95%)."""
    reference_group: Mapping[str, str] | None = None
    """Reference group per attribute, e.g. {"sex": "m"}; None (or an attribute left out) = the largest known group."""
    flag_metrics: tuple[str, ...] = DEFAULT_FLAG_METRICS
    """Metrics whose disparities can be flagged (others are reported only)."""

    def __post_init__(self) -> None:
        checks = (
            ("threshold", 0 < self.threshold < 1, "strictly between 0 and 1"),
            ("tolerance_difference", self.tolerance_difference >= 0, "at least 0"),
            ("tolerance_ratio", 0 < self.tolerance_ratio <= 1, "in (0, 1]"),
            ("min_cell_size", isinstance(self.min_cell_size, int | np.integer) and self.min_cell_size >= 1, "a positive integer"),
            ("confidence", 0 < self.confidence < 1, "strictly between 0 and 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise InputError(_ERR_SETTING.format(name=name, rule=rule, value=getattr(self, name)))
        object.__setattr__(self, "flag_metrics", tuple(self.flag_metrics))
        unknown = sorted(set(self.flag_metrics) - set(METRICS) - {EQUALIZED_ODDS})
        if unknown:
            raise InputError(_ERR_FLAG_METRIC.format(unknown=unknown, known=[*METRICS, EQUALIZED_ODDS]))
        if self.reference_group is not None:
            object.__setattr__(self, "reference_group", dict(self.reference_group))

    def as_dict(self) -> dict:
        """Plain values, for JSON records."""
        out = asdict(self)
        out["flag_metrics"] = list(self.flag_metrics)
        return out


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class FlaggedDisparity:
    """A disparity whose interval lies beyond the tolerance."""

    period: str | None
    attribute: str
    group: str
    reference_group: str
    metric: str
    measure: str
    value: float
    lower: float
    upper: float
    tolerance: str
    sentence: str


@dataclass(frozen=True, kw_only=True, eq=False)
class FairnessAudit:
    """Group metrics and disparities for the reference period and every production period.

    ``groups`` and ``disparities`` are the tables of :func:`group_metrics` and
    :func:`disparities` for every period and attribute, stacked, with a leading
    ``period`` column, in period order. ``notes`` (columns ``period, attribute, note``)
    states data problems in words.
    """

    settings: FairnessSettings
    periods: tuple[str, ...]
    attributes: tuple[str, ...]
    reference_groups: Mapping[str, str | None]
    groups: pd.DataFrame
    disparities: pd.DataFrame
    flagged: tuple[FlaggedDisparity, ...]
    notes: pd.DataFrame

    @property
    def single_attributes(self) -> tuple[str, ...]:
        """The group columns of one attribute each (``"sex"``, ``"age_band"``), without the intersection."""
        return tuple(a for a in self.attributes if INTERSECTION_SEPARATOR not in a)

    def group_table(self, *, period: str, attribute: str) -> pd.DataFrame:
        """One period's group table for one attribute (as :func:`group_metrics` returns it)."""
        g = self.groups
        return g[(g["period"] == period) & (g["attribute"] == attribute)].drop(columns="period").reset_index(drop=True)

    def disparity_table(self, *, period: str, attribute: str) -> pd.DataFrame:
        """One period's disparity table for one attribute (as :func:`disparities` returns it)."""
        d = self.disparities
        return d[(d["period"] == period) & (d["attribute"] == attribute)].drop(columns="period").reset_index(drop=True)

    def gap_table(self) -> pd.DataFrame:
        """The gaps that can be flagged, for people: one row per period, group and flaggable
        metric (a ratio for observed/expected, a difference otherwise), flagged rows first.

        Columns: ``period, group, compared with, metric, gap, verdict, flagged``."""
        from clinval.evidence import format_interval, format_number

        d = self.disparities
        wanted = d["metric"].isin(self.settings.flag_metrics) & (
            d["measure"] == np.where(d["metric"] == "observed_expected", RATIO, DIFFERENCE))
        rows = []
        for r in d[wanted].itertuples(index=False):
            if r.status != OK:
                gap = "—"
                verdict = "not shown: too few patients (suppressed)" if "suppressed" in str(r.status) else "not computed"
            else:
                gap = format_interval(r.value, r.lower, r.upper, confidence=self.settings.confidence)
                if r.measure == RATIO:
                    gap = f"{gap.split(' ', 1)[0]} times{(' ' + gap.split(' ', 1)[1]) if ' ' in gap else ''}"
                elif r.value > 0:
                    gap = "+" + gap
                verdict = "flagged" if r.flagged else (
                    "too uncertain to judge" if _too_wide(r.measure, r.metric, r.lower, r.upper, self.settings)
                    else "within tolerance")
            rows.append({"period": r.period, "group": _describe(r.attribute, r.group),
                         "compared with": _describe(r.attribute, r.reference_group) if r.reference_group else "—",
                         "metric": METRIC_LABELS[r.metric], "gap": gap, "verdict": verdict, "flagged": bool(r.flagged)})
        table = pd.DataFrame(rows, columns=["period", "group", "compared with", "metric", "gap", "verdict", "flagged"])
        return table.sort_values("flagged", ascending=False, kind="stable").reset_index(drop=True)

    def flagged_attribute(self) -> str:
        """The group column with the most flagged gaps (the intersection when none is flagged)."""
        counts = pd.Series([f.attribute for f in self.flagged]).value_counts()
        if len(counts):
            return str(counts.index[0])
        return next((a for a in self.attributes if INTERSECTION_SEPARATOR in a), self.attributes[-1])


# ---------------------------------------------------------------------------- one period, one attribute


@dataclass(frozen=True)
class _Inputs:
    y: np.ndarray  # 0/1 outcome, NaN = label not yet known
    risk: np.ndarray
    decision: np.ndarray  # risk >= threshold
    groups: pd.Series  # group label per record (str)
    order: list[str]  # groups present, in display order
    labels_available: bool


def _inputs(frame: pd.DataFrame, attribute: str, settings: FairnessSettings) -> _Inputs:
    y = pd.to_numeric(frame["label"], errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    risk = frame["predicted_risk"].to_numpy(dtype=float)
    column = _group_column(frame[attribute])
    groups = pd.Series(column.astype(str).to_numpy(), name=attribute)
    return _Inputs(y=y, risk=risk, decision=risk >= settings.threshold, groups=groups, order=_order(column),
                   labels_available=bool((~np.isnan(y)).any()))


def _largest(counts: Mapping[str, int], order: Sequence[str]) -> str | None:
    """The largest group whose label has no "unknown" part (first in order on a tie)."""
    known = [g for g in order if not _is_unknown(g) and counts.get(g, 0) > 0]
    return max(known, key=lambda g: (counts[g], -order.index(g))) if known else None


def _where(period: str | None) -> str:
    if period is None:
        return ""
    return f"In the {REFERENCE_PERIOD} period, " if period == REFERENCE_PERIOD else f"In {period}, "


@dataclass
class _GroupResult:
    n: int
    hidden: bool
    value: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)


def _analyse(frame: pd.DataFrame, *, attribute: str, settings: FairnessSettings,
             hidden: Mapping[tuple[str, str], bool], reference: str | None, period: str | None,
             outcome_hidden: Mapping[str, Mapping[tuple[str, str], bool]] | None = None,
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Group table, disparity table and notes for one attribute in one period."""
    data = _inputs(frame, attribute, settings)
    where = _where(period)
    label = suppressed_label(settings.min_cell_size)
    counts = data.groups.value_counts()
    estimates = group_estimates(data.y, data.risk, data.decision, data.groups, settings.confidence)
    results: dict[str, _GroupResult] = {}
    rows, notes = [], []
    for g in [OVERALL_GROUP, *data.order]:
        is_overall = g == OVERALL_GROUP
        res = results[g] = _GroupResult(n=data.y.size if is_overall else int(counts[g]),
                                        hidden=hidden.get(("", OVERALL_GROUP) if is_overall else (attribute, g), True))
        if res.hidden:
            status = SUPPRESSED_STATUS.format(k=settings.min_cell_size)
            rows += [{"attribute": attribute, "group": g, "n": label, "suppressed": True, "metric": m,
                      "value": math.nan, "lower": math.nan, "upper": math.nan, "status": status} for m in METRICS]
            continue
        sel = np.ones(data.y.size, dtype=bool) if is_overall else (data.groups == g).to_numpy()
        res.counts = _rate_counts(data.y[sel], data.decision[sel])
        labelled = data.y[sel][~np.isnan(data.y[sel])]
        key = ("", OVERALL_GROUP) if is_overall else (attribute, g)
        for m in METRICS:
            est: Estimate = estimates[g][m]
            status, value, lower, upper = est.status, est.value, est.lower, est.upper
            small = outcome_hidden is not None and any(outcome_hidden[c].get(key, True) for c in _OUTCOME_CELLS[m])
            if m in _LABEL_METRICS and not data.labels_available:
                status = LABELS_NOT_AVAILABLE
            elif m in _LABEL_METRICS and labelled.size == 0:
                status = _ERR_NO_LABELS_GROUP
            elif small:
                status = SUPPRESSED_RATE.format(k=settings.min_cell_size)
            if status != OK:
                value = lower = upper = math.nan
            res.value[m], res.status[m], res.interval[m] = value, status, (lower, upper)
            rows.append({"attribute": attribute, "group": g, "n": res.n, "suppressed": False, "metric": m,
                         "value": value, "lower": lower, "upper": upper, "status": status})
        outcomes_shown = outcome_hidden is None or not any(outcome_hidden[c].get(key, True) for c in ("events", "non_events"))
        if outcomes_shown and not is_overall and labelled.size and labelled.min() == labelled.max():
            what = "no events" if labelled.max() == 0 else "only events (no non-events)"
            lost = [METRIC_LABELS[m] for m in METRICS if m in _LABEL_METRICS and math.isnan(res.value[m])]
            notes.append({"attribute": attribute, "note": _capitalise(_NOTE_ONE_CLASS.format(
                where=where, who=_describe(attribute, g), what=what, metrics=", ".join(lost)))})
    group_table = pd.DataFrame(rows, columns=list(_GROUP_COLUMNS))
    disparity_table, more = _disparities(attribute=attribute, order=data.order, results=results,
                                         reference=reference, settings=settings, where=where)
    return group_table, disparity_table, notes + more


_GROUP_COLUMNS = ("attribute", "group", "n", "suppressed", "metric", "value", "lower", "upper", "status")


# ---------------------------------------------------------------------------- public: one table


def _prepared(log: pd.DataFrame) -> pd.DataFrame:
    """The log without records that have no predicted risk (they cannot be audited)."""
    missing = [c for c in _COLUMNS if c not in log.columns]
    if missing:
        raise InputError(_ERR_LOG_COLUMNS.format(missing=missing, columns=list(log.columns)))
    if len(log) == 0:
        raise InputError(_ERR_EMPTY)
    risk = pd.to_numeric(log["predicted_risk"], errors="coerce")
    if ((risk < 0) | (risk > 1)).any():
        raise InputError(_ERR_RISK_RANGE.format(low=risk.min(), high=risk.max()))
    labels = pd.to_numeric(log["label"], errors="coerce")
    odd = labels.notna() & ~labels.isin([0, 1]) | (labels.isna() & log["label"].notna())
    if odd.any():
        raise InputError(_ERR_LABEL_VALUES.format(values=sorted(map(str, log.loc[odd.to_numpy(), "label"].unique()))[:5]))
    kept = log[risk.notna().to_numpy()]
    if "record_id" in kept.columns:
        # resamples are drawn by position: a fixed order makes them independent of the file's row order
        kept = kept.iloc[np.argsort(kept["record_id"].astype(str).to_numpy(), kind="stable")]
    return kept


def _family_columns(log: pd.DataFrame, attribute: str) -> list[str]:
    """``attribute`` and every column published with it (its components or intersections)."""
    if attribute not in log.columns:
        raise InputError(_ERR_COLUMN.format(column=attribute, columns=list(log.columns)))
    columns = [attribute]
    if INTERSECTION_SEPARATOR in attribute:
        parts = _components(attribute)
        if all(p in log.columns for p in parts):
            columns = [*parts, attribute]
    else:
        for c in log.columns:
            if isinstance(c, str) and INTERSECTION_SEPARATOR in c and attribute in _components(c) \
                    and all(p in log.columns for p in _components(c)):
                columns += [p for p in [*_components(c), c] if p not in columns]
    return columns


def _single(log: pd.DataFrame, attribute: str, settings: FairnessSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = _prepared(log)
    columns = _family_columns(frame, attribute)
    groups = pd.DataFrame({c: _group_column(frame[c]) for c in columns}, index=frame.index)
    hidden = _suppression(groups, settings.min_cell_size)
    reference = (settings.reference_group or {}).get(attribute)
    counts = groups[attribute].astype(str).value_counts()
    if reference is None:
        reference = _largest(counts.to_dict(), _order(groups[attribute]))
    elif reference not in counts.index:
        raise InputError(_ERR_REFERENCE_GROUP.format(group=reference, attribute=attribute, groups=_order(groups[attribute])))
    work = frame[list(_COLUMNS)].assign(**{attribute: groups[attribute]})
    y = pd.to_numeric(frame["label"], errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    outcome_hidden = _outcome_suppression(groups, y, frame["predicted_risk"].to_numpy(dtype=float) >= settings.threshold,
                                          settings.min_cell_size)
    table, disp, _ = _analyse(work, attribute=attribute, settings=settings, hidden=hidden, reference=reference, period=None,
                              outcome_hidden=outcome_hidden)
    return table, disp


def group_metrics(log: pd.DataFrame, *, attribute: str, settings: FairnessSettings) -> pd.DataFrame:
    """Every metric for each group of one sensitive attribute, with bootstrap intervals.

    Parameters
    ----------
    log
        Prediction log (``label``, ``predicted_risk`` and the group column
        ``attribute``, e.g. joined from :func:`sensitive_frame`). All rows are pooled:
        pass one period at a time. An intersection column in ``log`` that involves
        ``attribute`` is taken to be published too, and suppression covers both.
    attribute
        Group column, e.g. ``"sex"``, ``"age_band"`` or ``"sex × age_band"``.
    settings
        Threshold, bootstrap and suppression settings.

    Returns
    -------
    pandas.DataFrame
        One row per (group, metric) with columns ``attribute, group, n, suppressed,
        metric, value, lower, upper, status``. The first rows (``group == "all
        patients"``) are the whole log. ``n`` is an int, or ``"<11"`` for a suppressed
        group, whose values are missing; ``status`` is ``"ok"``, ``"insufficient data:
        <reason>"`` (value and/or interval missing) or ``"suppressed: ..."``. Values are
        proportions (0-1), AUROC, O/E or slope; ``lower``/``upper`` bound the
        ``settings.confidence`` interval.
    """
    return _single(log, attribute, settings)[0]


def disparities(log: pd.DataFrame, *, attribute: str, settings: FairnessSettings) -> pd.DataFrame:
    """Each group's gap to the reference group, with bootstrap intervals and a verdict.

    Parameters
    ----------
    log, attribute, settings
        As for :func:`group_metrics`. The reference group is
        ``settings.reference_group[attribute]`` or the largest group without an
        "unknown" part.

    Returns
    -------
    pandas.DataFrame
        One row per (non-reference group, metric, measure): columns ``attribute, group,
        reference_group, metric, measure, value, lower, upper, tolerance, flagged,
        status, sentence``. ``measure`` is ``"difference"`` (group - reference, in the
        metric's units) or ``"ratio"`` (group / reference); metric
        ``"equalized_odds"`` has the difference only (the larger absolute gap in
        sensitivity or false-positive rate). ``flagged`` is True only when the interval
        lies entirely beyond the tolerance; ``sentence`` says so in words. A gap that
        cannot be computed (suppressed group, one outcome class, no labels) has
        ``status == "not computed: <reason>"``; an attribute with a single group gives one
        row with ``metric == "all"`` saying so.
    """
    return _single(log, attribute, settings)[1]


# ---------------------------------------------------------------------------- public: over time


def _period_order(periods: pd.Series, requested: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(periods.astype(str)))
    if requested is not None:
        missing = [p for p in requested if p not in present]
        if missing:
            raise InputError(_ERR_PERIODS.format(missing=missing, present=present))
        return list(requested)
    return ([REFERENCE_PERIOD] if REFERENCE_PERIOD in present else []) + [p for p in present if p != REFERENCE_PERIOD]


def audit_over_time(log: pd.DataFrame, *, attributes: Sequence[str], bands: Mapping[str, Sequence[float]],
                    settings: FairnessSettings, periods: Sequence[str] | None = None) -> FairnessAudit:
    """The fairness audit of every period: the same tables for each, so a gap opening shows.

    Parameters
    ----------
    log
        Prediction log with ``period``, ``label`` (may be missing), ``predicted_risk``
        and the raw sensitive attributes.
    attributes
        Sensitive attribute columns, e.g. ``["sex", "age"]``.
    bands
        Band edges of numeric attributes, e.g. ``{"age": [35, 45, 55, 65, 70]}`` (years).
    settings
        See :class:`FairnessSettings`. ``reference_group`` keys are group-column names
        (``"sex"``, ``"age_band"``, ``"sex × age_band"``).
    periods
        Periods to audit, in order; default ``"reference"`` first, then the others in
        the order they appear in the log.

    Returns
    -------
    FairnessAudit
        The reference group of each attribute is fixed for all periods: the one named
        in settings, else the largest group in the first audited period (the
        reference period) so that every period is compared with the same group.
    """
    frame = _prepared(log)
    if "period" not in frame.columns:
        raise InputError(_ERR_LOG_COLUMNS.format(missing=["period"], columns=list(log.columns)))
    groups = sensitive_frame(frame, attributes=attributes, bands=bands)
    columns = list(groups.columns)
    order = _period_order(frame["period"], periods)
    period_of = frame["period"].astype(str).to_numpy()
    extra = sorted(set(settings.reference_group or {}) - set(columns))
    if extra:
        raise InputError(_ERR_REFERENCE_KEY.format(keys=extra, attributes=columns))

    notes: list[dict] = []
    for a in attributes:
        if frame[a].isna().any():
            column = f"{a}_band" if a in bands else a
            notes.append({"period": None, "attribute": column, "note": _NOTE_UNKNOWN.format(attribute=column.replace("_", " "))})
    references: dict[str, str | None] = {}
    first = period_of == order[0]
    for c in columns:
        named = (settings.reference_group or {}).get(c)
        if named is not None:
            if named not in set(groups[c].astype(str)):
                raise InputError(_ERR_REFERENCE_GROUP.format(group=named, attribute=c, groups=_order(groups[c])))
            references[c] = named
            how = "named in the settings"
        else:
            counts = groups.loc[first, c].astype(str).value_counts().to_dict()
            references[c] = _largest(counts, _order(groups[c]))
            how = f"the largest group in the {'reference period' if order[0] == REFERENCE_PERIOD else 'period ' + order[0]}"
        if references[c] is not None:
            notes.append({"period": None, "attribute": c, "note": _NOTE_REFERENCE_CHOICE.format(
                attribute=c.replace("_", " "), group=references[c], how=how)})

    group_tables, disparity_tables = [], []
    for period in order:
        rows = period_of == period
        part_groups = groups.loc[rows]
        part = frame.loc[rows, list(_COLUMNS)]
        hidden = _suppression(part_groups, settings.min_cell_size)
        y_part = pd.to_numeric(part["label"], errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        outcome_hidden = _outcome_suppression(part_groups, y_part, part["predicted_risk"].to_numpy(dtype=float) >= settings.threshold,
                                              settings.min_cell_size)
        if part["label"].isna().all():
            notes.append({"period": period, "attribute": None, "note": _NOTE_NO_LABELS.format(where=_where(period))})
        for c in columns:
            work = part.assign(**{c: part_groups[c]})
            table, disp, more = _analyse(work, attribute=c, settings=settings, hidden=hidden,
                                         reference=references[c], period=period, outcome_hidden=outcome_hidden)
            group_tables.append(table.assign(period=period))
            disparity_tables.append(disp.assign(period=period))
            notes += [{"period": period, **n} for n in more]

    group_all = pd.concat(group_tables, ignore_index=True)
    group_all = group_all[["period", *_GROUP_COLUMNS]]
    disp_all = pd.concat(disparity_tables, ignore_index=True)
    disp_all = disp_all[["period", *_DISPARITY_COLUMNS]]
    flagged = tuple(
        FlaggedDisparity(period=r.period, attribute=r.attribute, group=r.group, reference_group=r.reference_group,
                         metric=r.metric, measure=r.measure, value=float(r.value), lower=float(r.lower),
                         upper=float(r.upper), tolerance=r.tolerance, sentence=r.sentence)
        for r in disp_all[disp_all["flagged"]].itertuples(index=False)
    )
    notes_frame = pd.DataFrame(notes, columns=["period", "attribute", "note"])
    notes_frame["note"] = notes_frame["note"].map(_capitalise)
    return FairnessAudit(settings=settings, periods=tuple(order), attributes=tuple(columns),
                         reference_groups=references, groups=group_all, disparities=disp_all,
                         flagged=flagged, notes=notes_frame)


# ---------------------------------------------------------------------------- JSON


def _json_value(v):
    if v is None or isinstance(v, str | bool):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return None if not math.isfinite(float(v)) else float(v)
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


def to_json(audit: FairnessAudit) -> dict:
    """Every number of the audit as JSON-safe values (NaN -> None; suppressed n -> "<11").

    Returns
    -------
    dict
        ``settings``, ``periods``, ``attributes``, ``reference_groups``,
        ``metric_labels``, ``groups`` and ``disparities`` (lists of table rows),
        ``flagged`` (the flagged disparities) and ``notes``.
    """
    return {
        "settings": {k: _json_value(v) if not isinstance(v, list | dict) else v for k, v in audit.settings.as_dict().items()},
        "method": {"interval": "score-type per group (Wilson; Newcombe for AUROC; delta method for O/E; Wald for the "
                               "calibration slope); gaps by MOVER (Newcombe's method 10 for rates), no resampling",
                   "disaggregation": "per group, the cells of fairlearn.metrics.MetricFrame"},
        "periods": list(audit.periods),
        "attributes": list(audit.attributes),
        "reference_groups": dict(audit.reference_groups),
        "metric_labels": dict(METRIC_LABELS),
        "groups": _records(audit.groups),
        "disparities": _records(audit.disparities),
        "flagged": [{k: _json_value(v) for k, v in asdict(f).items()} for f in audit.flagged],
        "notes": _records(audit.notes),
    }
