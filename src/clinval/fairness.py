"""Fairness audit: model performance and calibration per patient group, with disparities.

A risk model can decay unevenly: well calibrated for men and over-predicting for women,
or losing sensitivity in the oldest age band only. This module measures each metric in
each group of each sensitive attribute (and of their intersection), compares every group
with a reference group, and says in plain words which gaps lie beyond the tolerance.

Disaggregation is fairlearn's :class:`~fairlearn.metrics.MetricFrame`; the metric
callables handed to it reuse :mod:`clinval.performance` (prevalence, AUROC, O/E,
calibration slope) and fairlearn's base metrics (sensitivity, false-positive rate,
selection rate), so the numbers agree with the rest of clinval.

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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import product

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from clinval import intervals, performance
from clinval.performance import OK, Estimate
from clinval.disclosure import SUPPRESSED_RATE
from clinval.privacy import DEFAULT_MIN_CELL_SIZE, determined_cells, suppressed_label, suppression_mask

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
UNKNOWN = "unknown"
"""The group of patients whose sensitive attribute is missing."""
INTERSECTION_SEPARATOR = " × "
"""Joins attribute names and group labels of an intersection: ``"sex × age_band"``, ``"f × 55-64"``."""
OVERALL_GROUP = "all patients"
"""The ``group`` of the whole-period rows of a group table."""
REFERENCE_PERIOD = "reference"
"""The ``period`` of the reference hold-out in the prediction log."""

_LABEL_METRICS = frozenset(METRICS) - {"selection_rate"}
_COLUMNS = ("label", "predicted_risk")

# statuses and sentences
SUPPRESSED_STATUS = "suppressed: fewer than {k} patients here or in a cell that would reveal such a group"
"""Status of every metric of a suppressed group (``{k}`` = min_cell_size)."""
LABELS_NOT_AVAILABLE = "insufficient data: labels not yet available"
"""Status of metrics that need outcomes, in a period whose labels have not arrived."""
_ERR_NO_LABELS_GROUP = "insufficient data: no outcome labels in this group yet"
_ERR_NO_EVENTS = "insufficient data: no events in this group, so {metric} is undefined"
_ERR_NO_NON_EVENTS = "insufficient data: no non-events in this group, so {metric} is undefined"
_ERR_SEPARATION = ("insufficient data: predicted risk separates events from non-events perfectly, "
                   "so the calibration slope is not identified")
_ERR_NONE_SELECTED = "insufficient data: no labelled patient at or above the threshold, so PPV is undefined"
_NOT_COMPUTED = "not computed: {reason}"
_REASON_SUPPRESSED = "{who} is suppressed (small cell)"
_REASON_ABSENT = "the reference group {ref} has no patients here"
_REASON_NO_REFERENCE = "no known group to compare against"
_REASON_SINGLE_GROUP = "{attribute} has a single group ({group}) here, so there is nothing to compare"
_REASON_METRIC = "{metric} for {who}: {status}"
_REASON_NEGATIVE = "{metric} is negative for {who}, so a ratio is not meaningful"

# errors (programming or configuration mistakes, raised as ValueError)
_ERR_COLUMN = ("the prediction log has no column {column!r}; columns are {columns}. Add the group columns first: "
               "log.assign(**sensitive_frame(log, attributes=..., bands=...)).")
_ERR_ATTRIBUTE = "the prediction log has no column {column!r} for a sensitive attribute; columns are {columns}."
_ERR_LOG_COLUMNS = "the prediction log needs columns {missing}; it has {columns}."
_ERR_EDGES = "band edges must be at least two strictly increasing numbers; got {edges}."
_ERR_LABELS = "band labels must number one fewer than the edges ({n}); got {labels}."
_ERR_NOT_NUMERIC = "cannot band {name!r}: values are not numeric (e.g. {example!r})."
_ERR_BANDS_KEY = "bands given for {keys}, which are not among the attributes {attributes}."
_ERR_NO_ATTRIBUTES = "no sensitive attributes given."
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
_NOTE_SINGLE = "{where}{attribute} has a single group ({group}); no disparities can be computed for it."
_NOTE_ONE_CLASS = "{where}{who} has {what}, so {metrics} cannot be computed for it."
_NOTE_NO_LABELS = "{where}outcome labels have not arrived yet; only the selection rate is reported."
_NOTE_REFERENCE = "{where}{attribute}: disparities are not computed because {reason}."
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
                raise ValueError(_ERR_SETTING.format(name=name, rule=rule, value=getattr(self, name)))
        object.__setattr__(self, "flag_metrics", tuple(self.flag_metrics))
        unknown = sorted(set(self.flag_metrics) - set(METRICS) - {EQUALIZED_ODDS})
        if unknown:
            raise ValueError(_ERR_FLAG_METRIC.format(unknown=unknown, known=[*METRICS, EQUALIZED_ODDS]))
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


# ---------------------------------------------------------------------------- groups


def _is_integral(x: float) -> bool:
    return float(x).is_integer()


def _default_band_labels(edges: Sequence[float]) -> list[str]:
    if all(_is_integral(e) for e in edges):
        return [f"{int(lo)}-{int(hi) - 1}" if int(hi) - 1 > int(lo) else f"{int(lo)}"
                for lo, hi in zip(edges[:-1], edges[1:])]
    return [f"{lo:g} to <{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def band(values, *, edges: Sequence[float], labels: Sequence[str] | None = None) -> pd.Series:
    """A numeric attribute as bands ``[edges[i], edges[i+1])``.

    Parameters
    ----------
    values
        Numbers (e.g. age in years); missing values become ``"unknown"``.
    edges
        Strictly increasing band edges, in the values' units. Values below the first
        edge form the band ``"<first"``, values at or above the last ``"last+"``, so no
        patient is dropped.
    labels
        One label per band; default ``"35-44"`` for integer edges, else ``"35.5 to <45"``.

    Returns
    -------
    pandas.Series
        Ordered categorical (bands in order, then ``"unknown"``), aligned with ``values``.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError(_ERR_EDGES.format(edges=edges))
    if labels is None:
        labels = _default_band_labels(edges)
    labels = [str(x) for x in labels]
    if len(labels) != len(edges) - 1:
        raise ValueError(_ERR_LABELS.format(n=len(edges) - 1, labels=labels))
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna() & series.notna()
    if bad.any():
        raise ValueError(_ERR_NOT_NUMERIC.format(name=series.name, example=series[bad].iloc[0]))
    x = numeric.to_numpy(dtype=float, na_value=np.nan)
    fmt = (lambda e: f"{int(e)}") if all(_is_integral(e) for e in edges) else (lambda e: f"{e:g}")
    below, above = f"<{fmt(edges[0])}", f"{fmt(edges[-1])}+"
    idx = np.searchsorted(edges, x, side="right") - 1
    out = np.empty(x.size, dtype=object)
    inside = (idx >= 0) & (idx < len(labels))
    out[inside] = np.asarray(labels, dtype=object)[idx[inside]]
    out[(idx < 0) & ~np.isnan(x)] = below
    out[(idx >= len(labels)) & ~np.isnan(x)] = above
    out[np.isnan(x)] = UNKNOWN
    categories = [below, *labels, above, UNKNOWN]
    return pd.Series(pd.Categorical(out, categories=categories, ordered=True), index=series.index, name=series.name)


def _as_groups(values: pd.Series) -> pd.Series:
    """A categorical attribute as strings, missing -> "unknown", categories sorted, unknown last."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in values.cat.categories if str(c) != UNKNOWN]
    else:
        cats = sorted({str(v) for v in values.dropna().unique()} - {UNKNOWN})
    text = values.astype(object).where(values.notna(), UNKNOWN).map(str)
    return pd.Series(pd.Categorical(text, categories=[*cats, UNKNOWN], ordered=True), index=values.index, name=values.name)


def sensitive_frame(log: pd.DataFrame, *, attributes: Sequence[str], bands: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """The group columns of a prediction log.

    Parameters
    ----------
    log
        Prediction log with the raw sensitive attributes as columns.
    attributes
        Sensitive attribute columns, e.g. ``["sex", "age"]``.
    bands
        Band edges for numeric attributes, e.g. ``{"age": [35, 45, 55, 65, 70]}``
        (years); a banded attribute's column is named ``"<attribute>_band"``.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``log``: one ordered categorical column per attribute (missing ->
        ``"unknown"``) and, for two or more attributes, their intersection, named e.g.
        ``"sex × age_band"`` with groups such as ``"f × 55-64"``. Add them to the log
        with ``log.assign(**sensitive_frame(log, ...))`` (an unbanded attribute's
        column is replaced by its group column).
    """
    attributes = list(attributes)
    if not attributes:
        raise ValueError(_ERR_NO_ATTRIBUTES)
    for column in attributes:
        if column not in log.columns:
            raise ValueError(_ERR_ATTRIBUTE.format(column=column, columns=list(log.columns)))
    extra = sorted(set(bands) - set(attributes))
    if extra:
        raise ValueError(_ERR_BANDS_KEY.format(keys=extra, attributes=attributes))
    out = pd.DataFrame(index=log.index)
    for column in attributes:
        if column in bands:
            banded = band(log[column], edges=bands[column])
            out[f"{column}_band"] = banded.rename(f"{column}_band")
        else:
            out[column] = _as_groups(log[column])
    names = list(out.columns)
    if len(names) >= 2:
        name = INTERSECTION_SEPARATOR.join(names)
        parts = [out[c].astype(str) for c in names]
        joined = parts[0]
        for p in parts[1:]:
            joined = joined + INTERSECTION_SEPARATOR + p
        cats = [INTERSECTION_SEPARATOR.join(combo) for combo in product(*[list(out[c].cat.categories) for c in names])]
        out[name] = pd.Categorical(joined, categories=cats, ordered=True)
    return out


def _order(values: pd.Series) -> list[str]:
    """Groups present in ``values``, in display order."""
    present = set(values.astype(str).unique())
    if isinstance(values.dtype, pd.CategoricalDtype):
        ordered = [str(c) for c in values.cat.categories if str(c) in present]
    else:
        ordered = sorted(present - {UNKNOWN}) + ([UNKNOWN] if UNKNOWN in present else [])
    return ordered


def _components(name: str) -> list[str]:
    return name.split(INTERSECTION_SEPARATOR)


def _is_unknown(group: str) -> bool:
    return UNKNOWN in _components(group)


# ---------------------------------------------------------------------------- suppression


@dataclass(frozen=True)
class _Cells:
    """Every published count of one family (components and their intersection)."""

    counts: pd.Series  # indexed for suppression_mask: level L<j> = the family-j line of each cell
    lines: list[list[str]]
    where: list[tuple[str, str] | None]  # cell -> (column, group); None = the period total
    constraints: np.ndarray  # published sums as linear equations (rows) over cells (columns)


def _published_cells(groups: pd.DataFrame, weights: np.ndarray | None = None) -> _Cells:
    """The cells of one family for :func:`suppression_mask`, with its published sums.

    Cells are the intersection's non-empty interior cells, each component's marginal
    counts and the period total. Published sums: for component ``j`` and value ``v``,
    the interior cells with that value add up to the marginal cell (a *slice*); each
    component's marginal cells add up to the total. For one column alone, its cells add
    up to the total. Index level ``L<j>`` names each cell's line in family ``j`` (slices
    of component ``j``, and the sum of component ``j - 1``'s marginals), so the lead's
    complementary suppression sees every published sum.

    With ``weights`` (0/1 per patient, e.g. "died"), each cell counts the weighted
    patients of the groups that hold patients: the events of every published group.
    """
    w = np.ones(len(groups)) if weights is None else np.asarray(weights, dtype=float)
    names = list(groups.columns)
    k = len(names)
    levels = [_order(groups[c]) for c in names]
    keys: list[tuple[str, ...]] = []
    counts: list[int] = []
    where: list[tuple[str, str] | None] = []
    members: dict[str, list[tuple[int, float]]] = {}

    def add(key: list[str], n: int, who: tuple[str, str] | None, signs: dict[str, float]) -> None:
        for line, sign in signs.items():
            members.setdefault(line, []).append((len(keys), sign))
        keys.append(tuple(key))
        counts.append(n)
        where.append(who)

    if k > 1:
        interior = groups.astype(str).assign(_w=w).groupby(names, sort=False)["_w"].sum().to_dict()
        name = INTERSECTION_SEPARATOR.join(names)
        for combo in product(*levels):
            if combo not in interior:
                continue  # an absent combination is a known zero: it hides nothing
            n = int(interior[combo])
            lines = [f"slice|{j}|{v}" for j, v in enumerate(combo)]
            add(lines, n, (name, INTERSECTION_SEPARATOR.join(combo)), {ln: 1.0 for ln in lines})
    for j, name in enumerate(names):
        marginal = pd.Series(w, index=groups.index).groupby(groups[name].astype(str).to_numpy()).sum()
        for value in levels[j]:
            key = [f"solo|{j}|{value}"] * k
            signs = {f"sum|{j}": 1.0}
            if k > 1:
                key[j] = f"slice|{j}|{value}"
                signs[key[j]] = -1.0
            key[(j + 1) % k] = f"sum|{j}"
            add(key, int(marginal.get(value, 0)), (name, value), signs)
    add([f"sum|{(i - 1) % k}" for i in range(k)], int(w.sum()), None, {f"sum|{j}": -1.0 for j in range(k)})

    level_names = [f"L{i}" for i in range(k)]
    series = pd.Series(counts, index=pd.MultiIndex.from_tuples(keys, names=level_names), dtype=float)
    constraints = np.zeros((len(members), len(keys)))
    for row, cells in enumerate(members.values()):
        for pos, sign in cells:
            constraints[row, pos] = sign
    return _Cells(counts=series, lines=[[lv] for lv in level_names], where=where, constraints=constraints)


def _family_mask(groups: pd.DataFrame, min_cell_size: int,
                 weights: np.ndarray | None = None) -> dict[tuple[str, str], bool]:
    """Hidden (True) per (column, group) for one family in one period.

    :func:`clinval.privacy.suppression_mask` hides small cells and their complements
    line by line; a hidden cell can still be fixed by a combination of lines (e.g. two
    hidden blocks joined by one hidden cell), so while any hidden count is determined,
    the smallest visible cell on one of its lines is hidden too and the mask recomputed.

    With ``weights`` the cells count weighted patients (events, patients flagged, ...) and
    a zero is as telling as a small count ("nobody in this group died"): it is hidden too.
    """
    cells = _published_cells(groups, weights)
    total = len(cells.where) - 1
    values = cells.counts.to_numpy()
    if values[total] < min_cell_size:
        return {w: True for w in cells.where if w is not None}
    forced: set[int] = set(np.flatnonzero(values == 0)) if weights is not None else set()
    while True:
        probe = cells.counts.copy()
        for f in forced:
            probe.iloc[f] = 1.0  # a forced cell counts as small, so it is hidden
        mask = suppression_mask(probe, min_cell_size=min_cell_size, lines=cells.lines).to_numpy().copy()
        mask[total] = False  # the period total is published elsewhere
        determined = determined_cells(cells.constraints, mask)
        if not determined.any():
            break
        victim = int(np.flatnonzero(determined)[0])
        on_its_lines = (np.abs(cells.constraints[np.abs(cells.constraints[:, victim]) > 0]) > 0).any(axis=0)
        candidates = [np.flatnonzero(on_its_lines & ~mask & (values > 0)), np.flatnonzero(~mask & (values > 0))]
        pool = next((c[c != total] for c in candidates if (c != total).any()), np.array([], dtype=int))
        if pool.size == 0:
            break  # nothing left to hide but the total
        forced.add(int(pool[np.argmin(values[pool])]))
    return {w: bool(mask[pos]) for pos, w in enumerate(cells.where) if w is not None}


def _families(columns: Sequence[str]) -> list[list[str]]:
    """Columns published together: each intersection with its components; the rest alone."""
    columns = list(columns)
    families, used = [], set()
    for c in columns:
        if INTERSECTION_SEPARATOR in c and all(p in columns for p in _components(c)):
            families.append([*_components(c), c])
            used.update([*_components(c), c])
    families += [[c] for c in columns if c not in used]
    return families


def _suppression(groups: pd.DataFrame, min_cell_size: int,
                 weights: np.ndarray | None = None) -> dict[tuple[str, str], bool]:
    """Hidden (True) per (column, group) for all group columns of one period, plus
    ``("", "all patients")`` for the period total. With ``weights`` (0/1 per patient) the
    counts are of the weighted patients (e.g. events) and zeros are hidden too."""
    total = len(groups) if weights is None else float(np.sum(weights))
    hidden: dict[tuple[str, str], bool] = {("", OVERALL_GROUP): total < min_cell_size}
    for family in _families(groups.columns):
        if len(family) > 1:
            hidden.update(_family_mask(groups[family[:-1]], min_cell_size, weights))
        elif INTERSECTION_SEPARATOR in family[0]:
            # an intersection without its component columns: rebuild them from the labels,
            # so its margins (published or derivable) are protected all the same
            column = family[0]
            parts = _components(column)
            split = groups[column].astype(str).str.split(INTERSECTION_SEPARATOR, regex=False, expand=True)
            frame = pd.DataFrame({p: split[i] for i, p in enumerate(parts)}, index=groups.index)
            hidden.update({key: h for key, h in _family_mask(frame, min_cell_size, weights).items() if key[0] == column})
        else:
            hidden.update(_family_mask(groups[family], min_cell_size, weights))
    return hidden


_OUTCOME_CELLS = {
    # which patients each metric's published value counts, as (cell, cell): a rate and its complement
    "prevalence": ("events", "non_events"),
    "auroc": ("events", "non_events"),
    "observed_expected": ("events", "non_events"),
    "calibration_slope": ("events", "non_events"),
    "sensitivity": ("true_positives", "false_negatives"),
    "false_positive_rate": ("false_positives", "true_negatives"),
    "ppv": ("true_positives", "false_positives"),
    "selection_rate": ("selected", "not_selected"),
}
"""A metric of a group is published only when every cell it is computed from holds at
least ``min_cell_size`` patients (prevalence 0.09 of 23 patients is 2 deaths)."""


def _outcome_suppression(groups: pd.DataFrame, y: np.ndarray, decision: np.ndarray,
                         min_cell_size: int) -> dict[str, dict[tuple[str, str], bool]]:
    """Hidden (True) per cell kind and (column, group), jointly over every table published
    together, so that no hidden count of events (or patients flagged, ...) follows from the
    period's totals or the other groups' rates."""
    events, non_events = y == 1, y == 0  # NaN (label not yet known) is neither
    cells = {"events": events, "non_events": non_events, "true_positives": events & decision,
             "false_negatives": events & ~decision, "false_positives": non_events & decision,
             "true_negatives": non_events & ~decision, "selected": decision, "not_selected": ~decision}
    return {kind: _suppression(groups, min_cell_size, mask.astype(float)) for kind, mask in cells.items()}


def group_counts(groups: pd.DataFrame, *, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Patients per group of every group column, with small-cell suppression.

    Parameters
    ----------
    groups
        Group columns of one period (:func:`sensitive_frame` output). Columns are
        published together: an intersection is suppressed jointly with its components
        so that no hidden count can be recovered from the period total, a component's
        table or the intersection's margins.
    min_cell_size
        Smallest count shown.

    Returns
    -------
    pandas.DataFrame
        ``attribute, group, n, suppressed``; ``n`` is an int or ``"<11"``. The first row
        is the whole period (``group == "all patients"``).
    """
    hidden = _suppression(groups, min_cell_size)
    label = suppressed_label(min_cell_size)
    rows = [{"attribute": "", "group": OVERALL_GROUP, "n": label if hidden[("", OVERALL_GROUP)] else len(groups),
             "suppressed": hidden[("", OVERALL_GROUP)]}]
    for column in groups.columns:
        counts = groups[column].astype(str).value_counts()
        for g in _order(groups[column]):
            h = hidden[(column, g)]
            rows.append({"attribute": column, "group": g, "n": label if h else int(counts[g]), "suppressed": h})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "suppressed"])


# ---------------------------------------------------------------------------- metrics (each with its interval)


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
    """fairlearn's MetricFrame over all metrics; cells hold :class:`Estimate` values with intervals."""
    return MetricFrame(
        metrics={m: partial(fn, confidence=confidence) for m, fn in _CALLABLES.items()},
        y_true=y,
        y_pred=decision.astype(int),
        sensitive_features=groups,
        sample_params={m: {"risk": risk} for m in _NEEDS_RISK},
    )


def _rate_counts(y: np.ndarray, decision: np.ndarray) -> dict[str, tuple[int, int]]:
    """``(count, total)`` of sensitivity and false-positive rate, for the equalized-odds interval."""
    labelled = ~np.isnan(y)
    events, non_events = labelled & (y == 1), labelled & (y == 0)
    return {"sensitivity": (int((decision & events).sum()), int(events.sum())),
            "false_positive_rate": (int((decision & non_events).sum()), int(non_events.sum()))}


# ---------------------------------------------------------------------------- one period, one attribute


@dataclass(frozen=True)
class _Inputs:
    y: np.ndarray  # 0/1 outcome, NaN = label not yet known
    risk: np.ndarray
    decision: np.ndarray  # risk >= threshold
    groups: pd.Series  # group label per record (str)
    order: list[str]  # groups present, in display order
    labels_available: bool


def _group_column(values: pd.Series) -> pd.Series:
    return values if isinstance(values.dtype, pd.CategoricalDtype) else _as_groups(values)


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


def _describe(attribute: str, group: str) -> str:
    """How a group is named in a sentence: ``sex f``, ``age band 55-64``, ``sex m and age band 35-54``."""
    if INTERSECTION_SEPARATOR in attribute and group.count(INTERSECTION_SEPARATOR) == attribute.count(INTERSECTION_SEPARATOR):
        return " and ".join(f"{a.replace('_', ' ')} {g}" for a, g in
                            zip(attribute.split(INTERSECTION_SEPARATOR), group.split(INTERSECTION_SEPARATOR)))
    return f"{attribute.replace('_', ' ')} {group}"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


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
    mf = _metric_frame(data.y, data.risk, data.decision, data.groups, settings.confidence)
    estimates: dict[str, pd.Series] = {OVERALL_GROUP: mf.overall, **{g: mf.by_group.loc[g] for g in data.order}}
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
_DISPARITY_COLUMNS = ("attribute", "group", "reference_group", "metric", "measure", "value", "lower", "upper",
                      "tolerance", "flagged", "status", "sentence")


# ---------------------------------------------------------------------------- disparities


def _tolerance(measure: str, metric: str, settings: FairnessSettings) -> str:
    if measure == RATIO:
        return f"{settings.tolerance_ratio:g} to {1 / settings.tolerance_ratio:.4g}"
    if metric == EQUALIZED_ODDS:
        return f"<= {settings.tolerance_difference:g}"
    return f"±{settings.tolerance_difference:g}"


def _beyond(measure: str, metric: str, lower: float, upper: float, settings: FairnessSettings) -> bool:
    if math.isnan(lower) or math.isnan(upper):
        return False
    tol = settings.tolerance_difference
    if measure == RATIO:
        return upper < settings.tolerance_ratio or lower > 1 / settings.tolerance_ratio
    if metric == EQUALIZED_ODDS:
        return lower > tol
    return lower > tol or upper < -tol


def _too_wide(measure: str, metric: str, lower: float, upper: float, settings: FairnessSettings) -> bool:
    """The interval holds both "no gap" and a gap beyond the tolerance: the data cannot tell them apart."""
    tol = settings.tolerance_difference
    if measure == RATIO:
        return lower <= 1 <= upper and (lower < settings.tolerance_ratio or upper > 1 / settings.tolerance_ratio)
    if metric == EQUALIZED_ODDS:
        return lower <= 0 and upper > tol
    return lower <= 0 <= upper and (lower < -tol or upper > tol)


def _sentence(*, measure: str, metric: str, who: str, ref: str, value: float, lower: float, upper: float,
              status: str, flagged: bool, settings: FairnessSettings, where: str) -> str:
    name = METRIC_LABELS[metric]
    conf = f"{settings.confidence:.0%}"
    has_ci = not (math.isnan(lower) or math.isnan(upper))
    if metric == EQUALIZED_ODDS:
        ci = f" ({conf} CI {lower:.2f} to {upper:.2f})" if has_ci else ""
        body = (f"the {name} between {who} and {ref} (the larger of their sensitivity and false-positive-rate "
                f"gaps) is {value:.2f}{ci}")
    elif measure == DIFFERENCE:
        ci = f", {conf} CI {lower:+.2f} to {upper:+.2f}" if has_ci else ""
        direction = "higher" if value > 0 else "lower"
        body = (f"{name} for {who} is {abs(value):.2f} {direction} than for {ref} (difference {value:+.2f}{ci})"
                if value != 0 else f"{name} for {who} is the same as for {ref} (difference 0.00{ci})")
    else:
        ci = f" ({conf} CI {lower:.2f} to {upper:.2f})" if has_ci else ""
        body = f"{name} for {who} is {value:.2f} times that for {ref}{ci}"
    tol = settings.tolerance_difference
    if flagged:
        verdict = (f", outside the {settings.tolerance_ratio:g} to {1 / settings.tolerance_ratio:.3g} tolerance."
                   if measure == RATIO else f", beyond the {tol:.2f} tolerance.")
    elif not has_ci:
        verdict = f"; no interval could be computed ({status.removeprefix('insufficient data: ')}), so it is not flagged."
    elif metric not in settings.flag_metrics:
        verdict = f"; {name} is reported, not flagged."
    elif _too_wide(measure, metric, lower, upper, settings):
        verdict = ("; the interval holds both no gap and a gap beyond the tolerance, too wide to judge at this "
                   "group size, so it is not flagged.")
    elif measure == RATIO:
        verdict = (f"; the interval does not lie entirely outside {settings.tolerance_ratio:g} to "
                   f"{1 / settings.tolerance_ratio:.3g}, so it is not flagged.")
    else:
        verdict = f"; the interval does not lie entirely beyond the {tol:.2f} tolerance, so it is not flagged."
    return _capitalise(where + body + verdict)


def _row(attribute: str, group: str, reference: str | None, metric: str, measure: str, tolerance: str,
         status: str, sentence: str, value: float = math.nan, lower: float = math.nan,
         upper: float = math.nan, flagged: bool = False) -> dict:
    return {"attribute": attribute, "group": group, "reference_group": reference, "metric": metric,
            "measure": measure, "value": value, "lower": lower, "upper": upper, "tolerance": tolerance,
            "flagged": flagged, "status": status, "sentence": sentence}


def _not_computed(attribute: str, group: str, reference: str | None, metric: str, measure: str, reason: str,
                  settings: FairnessSettings, where: str) -> dict:
    what = METRIC_LABELS.get(metric, "disparities")
    ref = "the reference group" if reference is None else _describe(attribute, reference)
    if measure:
        sentence = f"{where}the {measure} in {what} between {_describe(attribute, group)} and {ref} was not computed: {reason}."
    else:
        sentence = f"{where}{what} were not computed for {attribute.replace('_', ' ')}: {reason}."
    return _row(attribute, group, reference, metric, measure, _tolerance(measure, metric, settings) if measure else "",
                _NOT_COMPUTED.format(reason=reason), _capitalise(sentence))


def _triple(res: _GroupResult, metric: str) -> tuple[float, float, float]:
    return (res.value[metric], *res.interval[metric])


def _largest_gap(group: _GroupResult, reference: _GroupResult, confidence: float) -> tuple[float, float]:
    """Interval of the equalized-odds difference: Newcombe intervals of the sensitivity and
    false-positive-rate gaps at the Bonferroni level, combined by :func:`intervals.largest_gap_interval`."""
    level = 1 - (1 - confidence) / len(_EQUALIZED_ODDS_PARTS)
    gaps = []
    for part in _EQUALIZED_ODDS_PARTS:
        triples = []
        for res in (group, reference):
            count, total = res.counts[part]
            triples.append((count / total, *intervals.rate_interval(count, total, confidence=level)))
        gaps.append((triples[0][0] - triples[1][0], *intervals.difference_interval(*triples)))
    return intervals.largest_gap_interval(gaps)


def _disparities(*, attribute: str, order: list[str], results: Mapping[str, _GroupResult], reference: str | None,
                 settings: FairnessSettings, where: str) -> tuple[pd.DataFrame, list[dict]]:
    rows, notes = [], []
    if len(order) == 1:
        reason = _REASON_SINGLE_GROUP.format(attribute=attribute.replace("_", " "), group=order[0])
        rows.append(_not_computed(attribute, order[0], order[0], "all", "", reason, settings, where))
        notes.append({"attribute": attribute, "note": _capitalise(_NOTE_SINGLE.format(
            where=where, attribute=attribute.replace("_", " "), group=order[0]))})
        return pd.DataFrame(rows, columns=list(_DISPARITY_COLUMNS)), notes
    if reference is None:
        whole = _REASON_NO_REFERENCE
    elif reference not in results:
        whole = _REASON_ABSENT.format(ref=_describe(attribute, reference))
    elif results[reference].hidden:
        whole = _REASON_SUPPRESSED.format(who=f"the reference group {_describe(attribute, reference)}")
    else:
        whole = None
    if whole is not None:
        notes.append({"attribute": attribute, "note": _capitalise(_NOTE_REFERENCE.format(
            where=where, attribute=attribute.replace("_", " "), reason=whole))})
    ref_text = _describe(attribute, reference) if reference is not None else ""
    for g in order:
        if g == reference:
            continue
        who = _describe(attribute, g)
        reason_group = whole or (_REASON_SUPPRESSED.format(who=who) if results[g].hidden else None)
        for metric in [*METRICS, EQUALIZED_ODDS]:
            measures = (DIFFERENCE,) if metric == EQUALIZED_ODDS else (DIFFERENCE, RATIO)
            parts = _EQUALIZED_ODDS_PARTS if metric == EQUALIZED_ODDS else (metric,)
            reason = reason_group
            if reason is None:
                for part in parts:
                    for name, res in ((who, results[g]), (ref_text, results[reference])):
                        if reason is None and math.isnan(res.value[part]):
                            reason = _REASON_METRIC.format(metric=METRIC_LABELS[part], who=name,
                                                           status=res.status[part].removeprefix("insufficient data: "))
            for measure in measures:
                if reason is not None:
                    rows.append(_not_computed(attribute, g, reference, metric, measure, reason, settings, where))
                    continue
                rg, rr = results[g], results[reference]
                if metric == EQUALIZED_ODDS:
                    value = max(abs(rg.value[p] - rr.value[p]) for p in parts)
                    lower, upper = _largest_gap(rg, rr, settings.confidence)
                elif measure == DIFFERENCE:
                    value = rg.value[metric] - rr.value[metric]
                    lower, upper = intervals.difference_interval(_triple(rg, metric), _triple(rr, metric))
                else:
                    negative = next((name for name, res in ((who, rg), (ref_text, rr)) if res.interval[metric][0] < 0), None)
                    if rr.value[metric] == 0 or negative is not None:
                        why = (f"{METRIC_LABELS[metric]} for {ref_text} is 0, so a ratio is undefined" if negative is None
                               else _REASON_NEGATIVE.format(metric=METRIC_LABELS[metric], who=negative))
                        rows.append(_not_computed(attribute, g, reference, metric, measure, why, settings, where))
                        continue
                    value = rg.value[metric] / rr.value[metric]
                    lower, upper = intervals.ratio_interval(_triple(rg, metric), _triple(rr, metric))
                flagged = metric in settings.flag_metrics and _beyond(measure, metric, lower, upper, settings)
                sentence = _sentence(measure=measure, metric=metric, who=who, ref=ref_text, value=value, lower=lower,
                                     upper=upper, status=OK, flagged=flagged, settings=settings, where=where)
                rows.append(_row(attribute, g, reference, metric, measure, _tolerance(measure, metric, settings),
                                 OK, sentence, float(value), lower, upper, flagged))
    return pd.DataFrame(rows, columns=list(_DISPARITY_COLUMNS)), notes


# ---------------------------------------------------------------------------- public: one table


def _prepared(log: pd.DataFrame) -> pd.DataFrame:
    """The log without records that have no predicted risk (they cannot be audited)."""
    missing = [c for c in _COLUMNS if c not in log.columns]
    if missing:
        raise ValueError(_ERR_LOG_COLUMNS.format(missing=missing, columns=list(log.columns)))
    if len(log) == 0:
        raise ValueError(_ERR_EMPTY)
    risk = pd.to_numeric(log["predicted_risk"], errors="coerce")
    if ((risk < 0) | (risk > 1)).any():
        raise ValueError(_ERR_RISK_RANGE.format(low=risk.min(), high=risk.max()))
    labels = pd.to_numeric(log["label"], errors="coerce")
    odd = labels.notna() & ~labels.isin([0, 1]) | (labels.isna() & log["label"].notna())
    if odd.any():
        raise ValueError(_ERR_LABEL_VALUES.format(values=sorted(map(str, log.loc[odd.to_numpy(), "label"].unique()))[:5]))
    kept = log[risk.notna().to_numpy()]
    if "record_id" in kept.columns:
        # resamples are drawn by position: a fixed order makes them independent of the file's row order
        kept = kept.iloc[np.argsort(kept["record_id"].astype(str).to_numpy(), kind="stable")]
    return kept


def _family_columns(log: pd.DataFrame, attribute: str) -> list[str]:
    """``attribute`` and every column published with it (its components or intersections)."""
    if attribute not in log.columns:
        raise ValueError(_ERR_COLUMN.format(column=attribute, columns=list(log.columns)))
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
        raise ValueError(_ERR_REFERENCE_GROUP.format(group=reference, attribute=attribute, groups=_order(groups[attribute])))
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
            raise ValueError(_ERR_PERIODS.format(missing=missing, present=present))
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
        raise ValueError(_ERR_LOG_COLUMNS.format(missing=["period"], columns=list(log.columns)))
    groups = sensitive_frame(frame, attributes=attributes, bands=bands)
    columns = list(groups.columns)
    order = _period_order(frame["period"], periods)
    period_of = frame["period"].astype(str).to_numpy()
    extra = sorted(set(settings.reference_group or {}) - set(columns))
    if extra:
        raise ValueError(_ERR_REFERENCE_KEY.format(keys=extra, attributes=columns))

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
                raise ValueError(_ERR_REFERENCE_GROUP.format(group=named, attribute=c, groups=_order(groups[c])))
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
                   "disaggregation": "fairlearn.metrics.MetricFrame"},
        "periods": list(audit.periods),
        "attributes": list(audit.attributes),
        "reference_groups": dict(audit.reference_groups),
        "metric_labels": dict(METRIC_LABELS),
        "groups": _records(audit.groups),
        "disparities": _records(audit.disparities),
        "flagged": [{k: _json_value(v) for k, v in asdict(f).items()} for f in audit.flagged],
        "notes": _records(audit.notes),
    }
