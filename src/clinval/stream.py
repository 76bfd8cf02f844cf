"""Streaming, mergeable period summaries of a prediction log too large for memory.

A prediction log (Parquet: one file, or a folder of files) is read batch by batch; each
batch is cut by period and reduced to a :class:`PeriodCounts`: fixed-size counts and
sums that **merge by addition** (:func:`merge_period_counts`), so the summary of a whole
table equals the merge of the summaries of its batches, row groups, files or machines,
whatever the split and order. From a period's counts come the same drift rows as
:func:`clinval.drift.compare_period` (FDR-controlled the same way) and the performance
metrics of :mod:`clinval.performance`. Memory is one batch, one Parquet row group and
the counts (1.8 MB per period at the default risk resolution, plus 24 bytes per ECDF
grid point per numeric feature and period); it does not grow with the number of rows.

Reading: ``pyarrow.dataset`` finds the files and checks the columns; each file is read
one row group at a time by ``pyarrow.parquet.ParquetFile.iter_batches`` without
pre-buffering (the dataset scanner reads far ahead, and a pre-buffering reader keeps
what it read: apache/arrow#39808). DuckDB, measured on the same 10M-row log, was no
faster at handing batches to numpy and would be faster only by moving the binning rules
into SQL, a second definition of :mod:`clinval.profile`'s rules.

What a period's counts hold
---------------------------
* ``inputs.summary``: :class:`clinval.profile.PeriodSummary` (counts per reference bin and
  category, unseen categories, missing counts), made per batch by the pieces of
  :func:`clinval.profile.summarise_period` (the tests prove equality) and merged by
  :func:`clinval.profile.merge_summaries`.
* ``inputs.ecdf``: per numeric feature, an :class:`EcdfCounts` on the feature's *ECDF
  grid* (the distinct reference values, or ``max_grid`` reference quantiles when there are
  more): how many values equal each grid point, how many lie strictly between
  consecutive points, and their sum. This is what the Kolmogorov-Smirnov statistic and
  the Wasserstein distance need from the production period.
* ``prediction``: the same two for the predicted risk against the reference risk, when
  the profile has one.
* ``performance``: :class:`PerformanceCounts`: exact totals (rows, labelled rows,
  events, sum of risk, sum and sum of squares of the squared error) and, per outcome
  class, counts and sums of ``logit(risk)`` on a fixed grid of ``risk_resolution`` bins
  per unit of logit over ``[-28, 28]`` (covering every risk
  :mod:`clinval.performance` uses: it clips risk to ``[1e-12, 1 - 1e-12]``).

Exact and approximate (n = rows of the period, w = 1 / risk_resolution)
-----------------------------------------------------------------------
============================  ===========================================================
counts, PSI, Jensen-Shannon,  exact (integer counts; equal to the in-memory result)
chi-square, missing/unseen
KS statistic and p-value      exact when the ECDF grid is every distinct reference value
                              (at most ``max_grid``): the supremum of |F_ref - F_cur| is
                              reached at a grid point or just left of one, and both are
                              counted. Otherwise ``statistic_bound`` = the largest share
                              of the period lying strictly inside one grid interval that
                              holds reference values; |D - D_exact| <= that, and the
                              p-value is that of the D computed.
Wasserstein-1                 exact (to round-off) in every grid interval where
                              F_ref - F_cur keeps its sign (the interval's sum fixes the
                              integral); ``wasserstein_bound`` adds share x width of the
                              other intervals (crossings, intervals holding reference
                              values), divided by the reference SD.
prevalence (Wilson), O/E and  exact up to floating-point round-off of the sums
its CI, Brier score, mean
predicted risk
Brier CI, mean-risk CI        normal approximation (the in-memory Brier CI is a
                              percentile bootstrap; they agree to Monte Carlo error)
AUROC and its DeLong CI       DeLong on the risk grid (risks in one bin are ties):
                              ``error_bound`` = half the share of event/non-event pairs
                              sharing a bin, a strict bound on |AUROC_grid - AUROC|.
calibration intercept, slope  logistic fits (statsmodels) on the per-bin, per-class mean
                              logit with frequency weights; ``error_bound`` is the
                              first-order bound |cov| . |score error|, the score error
                              being at most max|f''| / 2 * n * w^2 (the linear term
                              cancels at the bin mean).
AUPRC, CBPE                   not computed from streams
============================  ===========================================================

Sums are float64 and added in batch order: merging in another order changes them only
by round-off, |error| <= (k + log2 n) * 2**-53 * sum|x| for k merges (the tests check a
relative 1e-12); counts are int64 and never differ.

Public API
----------
``LogColumns(*, period="period", label="label", risk="predicted_risk")``
``build_stream_profile(features, *, prediction=None, max_grid=16384, risk_resolution=1024)``
    -> :class:`StreamProfile`
``summarise_chunk(frame, profile, *, columns=LogColumns())`` -> dict period -> PeriodCounts
``merge_period_counts(a, b)`` -> PeriodCounts; ``merge_chunks(a, b)`` -> dict
``summarise_log(path, profile, *, columns=LogColumns(), batch_rows=131072, on_batch=None)``
    -> :class:`LogSummary`
``read_reference_risk(path, *, columns=LogColumns(), reference_period="reference")``
    -> numpy.ndarray
``count_log_rows(path)`` -> int (from the Parquet metadata)
``drift_table(profile, counts, *, settings=DriftSettings())`` -> DataFrame (one period)
``prediction_drift_table(profile, counts, *, settings=DriftSettings())`` -> DataFrame
``performance_table(counts, *, confidence=0.95)`` -> DataFrame (one period)
``stream_tables(profile, summary, *, settings=DriftSettings(), confidence=0.95)``
    -> :class:`StreamTables` (all periods, long format)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from clinval import drift as _drift
from clinval import performance as _performance
from clinval import risk as _risk
from clinval.drift import RESULT_COLUMNS, DriftSettings
from clinval.errors import InputError
from clinval.profile import (
    NumericProfile,
    PeriodSummary,
    ReferenceProfile,
    _check_columns,
    _numeric_values,
    _sorted_non_missing,
    _summarise_categorical,
    _summarise_numeric_sorted,
    merge_summaries,
    run_lengths,
    run_starts,
)
from clinval.vocabulary import REFERENCE, STATUS_OK

__all__ = [
    "DRIFT_COLUMNS",
    "PERFORMANCE_COLUMNS",
    "DriftCounts",
    "EcdfCounts",
    "LogColumns",
    "LogSummary",
    "PerformanceCounts",
    "PeriodCounts",
    "StreamError",
    "StreamProfile",
    "StreamTables",
    "build_stream_profile",
    "count_log_rows",
    "drift_table",
    "merge_chunks",
    "merge_period_counts",
    "performance_table",
    "prediction_drift_table",
    "read_reference_risk",
    "stream_tables",
    "summarise_chunk",
    "summarise_log",
]

#: Columns of :func:`drift_table`: :data:`clinval.drift.RESULT_COLUMNS` plus the streaming error bounds.
DRIFT_COLUMNS = (*RESULT_COLUMNS, "statistic_bound", "wasserstein_bound")
#: Columns of :func:`performance_table`: those of :func:`clinval.performance.evaluate` plus ``error_bound``.
PERFORMANCE_COLUMNS = ("metric", "value", "lower", "upper", "method", "n", "status", "error_bound")

RISK_LOGIT_LIMIT = 28.0
"""Half-width of the risk grid in logit units; covers logit(1e-12) = -27.6, performance's clip."""
_MAX_EXPIT_CURVATURE = 1.0 / (6.0 * math.sqrt(3.0))  # max |d^2/dx^2 expit(x)|
_MAX_EXPIT_SLOPE = 0.25  # max |d/dx expit(x)|
_PATH_WHAT = "prediction log"
# off-grid distinct values a period keeps exactly: as many as the tie-aware KS test handles
_EXACT_OFF_GRID = _drift._KS_DISCRETE_MAX_VALUES

ERR_GRID = "max_grid must be an integer >= 2, got {value!r}"
ERR_RESOLUTION = "risk_resolution must be an integer >= 1, got {value!r}"
ERR_BATCH_ROWS = "batch_rows must be an integer >= 1, got {value!r}"
ERR_PREDICTION_PROFILE = (
    "the prediction profile must profile exactly one numeric column, the predicted risk, that is not a feature; got {names}"
)
ERR_NO_FILE = "{path}: no such {what} (a Parquet file or a folder of Parquet files)"
ERR_READ = "{path}: could not read the {what} as Parquet: {reason}"
ERR_COLUMN = "{path}: column '{column}' ({role}) is not in the {what}; its columns are: {available}"
ERR_LABEL = "column '{column}' (label) holds {values}{where}; labels must be 0/1 or booleans, missing when not yet known"
ERR_LABEL_TYPE = "column '{column}' (label) has dtype {dtype}{where}; labels must be 0/1 or booleans"
ERR_RISK = "column '{column}' (predicted risk) holds {value!r}{where}; risks must be probabilities in [0, 1]"
ERR_MERGE = "cannot merge counts made with different stream profiles: {detail}"
ERR_NO_REFERENCE_RISK = (
    "{path}: no rows with {column} == {period!r}, so there is no reference risk to compare predictions with"
)


class StreamError(InputError):
    """Bad input to a streamed summary: the message names the file, column and row."""


@dataclass(frozen=True, kw_only=True)
class LogColumns:
    """Names of the prediction log's bookkeeping columns (the pipeline's by default)."""

    period: str = "period"
    """Column naming each row's period (any type; compared as text)."""
    label: str = "label"
    """Observed outcome: 0/1 or boolean, missing while not yet known."""
    risk: str = "predicted_risk"
    """Predicted probability of the outcome, in [0, 1]."""


# --------------------------------------------------------------------------- profile
@dataclass(frozen=True, eq=False)
class StreamProfile:
    """The reference side of every streamed comparison.

    Attributes
    ----------
    features : ReferenceProfile
        From :func:`clinval.profile.build_reference_profile` on the reference period.
    prediction : ReferenceProfile | None
        Profile of the reference predicted risk (one numeric column named as the log's
        risk column), or None for no prediction drift.
    grids : dict[str, numpy.ndarray]
        ECDF grid per numeric feature of ``features`` and of ``prediction``: ascending
        distinct reference values (units of the column), always including the reference
        minimum and maximum.
    grid_inside : dict[str, numpy.ndarray]
        Per grid, the reference count strictly inside each of the ``len(grid) + 1``
        intervals (all zero when the grid is every distinct reference value).
    risk_resolution : int
        Risk-grid bins per unit of logit.
    """

    features: ReferenceProfile
    prediction: ReferenceProfile | None
    grids: dict[str, np.ndarray]
    grid_inside: dict[str, np.ndarray]
    risk_resolution: int

    @property
    def risk_bins(self) -> int:
        """Number of risk-grid bins."""
        return int(round(2 * RISK_LOGIT_LIMIT * self.risk_resolution))

    @property
    def exact_ks(self) -> dict[str, bool]:
        """Per ECDF grid: True when the KS statistic from streamed counts is exact."""
        return {name: not bool(inside.any()) for name, inside in self.grid_inside.items()}


def _support_with_counts(profile: NumericProfile) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-missing reference values and their counts."""
    if profile.support_counts is not None:
        return profile.support, profile.support_counts
    return np.unique(profile.support, return_counts=True)


def _ecdf_grid(profile: NumericProfile, max_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid points (distinct reference values) and reference counts strictly inside each interval."""
    values, counts = _support_with_counts(profile)
    if values.size <= max_grid:
        grid = values.astype(np.float64)
    else:  # reference quantiles at evenly spaced ranks, plus the extremes
        cumulative = np.cumsum(counts)
        k = np.arange(max_grid, dtype=np.int64)
        targets = (k * int(cumulative[-1]) + max_grid - 2) // (max_grid - 1)  # ceil(k m / (G - 1)), exact in integers
        index = np.searchsorted(cumulative, np.maximum(targets, 1), side="left")
        grid = np.unique(np.concatenate((values[index], values[[0, -1]]))).astype(np.float64)
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    at_or_below = cumulative[np.searchsorted(values, grid, side="right")]
    below = cumulative[np.searchsorted(values, grid, side="left")]
    inside = np.zeros(grid.size + 1, dtype=np.int64)  # outer intervals hold no reference values
    inside[1:-1] = below[1:] - at_or_below[:-1]
    return grid, inside


def build_stream_profile(
    features: ReferenceProfile,
    *,
    prediction: ReferenceProfile | None = None,
    max_grid: int = 16384,
    risk_resolution: int = 1024,
) -> StreamProfile:
    """Add the ECDF grids and the risk grid to reference profiles.

    Parameters
    ----------
    features : ReferenceProfile
        The reference period's profile (:func:`clinval.profile.build_reference_profile`).
    prediction : ReferenceProfile or None
        Profile of the reference predicted risk: one numeric column, named as the
        log's risk column; None skips prediction drift.
    max_grid : int, default 16384
        Most ECDF grid points per numeric feature (24 bytes per point per period).
        With at most this many distinct reference values the KS statistic is exact.
    risk_resolution : int, default 1024
        Risk-grid bins per unit of logit (bin width w = 1 / risk_resolution).

    Returns
    -------
    StreamProfile
    """
    if isinstance(max_grid, bool) or not isinstance(max_grid, (int, np.integer)) or max_grid < 2:
        raise StreamError(ERR_GRID.format(value=max_grid))
    if isinstance(risk_resolution, bool) or not isinstance(risk_resolution, (int, np.integer)) or risk_resolution < 1:
        raise StreamError(ERR_RESOLUTION.format(value=risk_resolution))
    if prediction is not None and (
        len(prediction.numeric) != 1 or prediction.categorical or prediction.features[0] in features.features
    ):
        raise StreamError(ERR_PREDICTION_PROFILE.format(names=prediction.features))
    grids, inside = {}, {}
    for profile in (features, prediction):
        for name, numeric in ({} if profile is None else profile.numeric).items():
            grids[name], inside[name] = _ecdf_grid(numeric, int(max_grid))
    return StreamProfile(features=features, prediction=prediction, grids=grids, grid_inside=inside,
                         risk_resolution=int(risk_resolution))


# --------------------------------------------------------------------------- counts
@dataclass(frozen=True, eq=False)
class EcdfCounts:
    """A numeric column of one period counted on its ECDF grid (mergeable).

    Attributes
    ----------
    at : numpy.ndarray
        int64, one per grid point: values equal to it.
    between : numpy.ndarray
        int64, one per interval: ``[0]`` below the first point, ``[j]`` strictly between
        points ``j - 1`` and ``j``, ``[-1]`` above the last.
    between_sum : numpy.ndarray
        float64, the sum of those values per interval (units of the column).
    off_grid : tuple of (numpy.ndarray, numpy.ndarray) or None
        The distinct values between grid points (ascending) and their counts, while there
        are at most :data:`_EXACT_OFF_GRID` of them; None beyond. A heavily tied column
        (integer ages, scores) keeps its exact sample, so the tie-aware KS p-value of
        :mod:`clinval.drift` sees the same ties as the in-memory engine.
    """

    at: np.ndarray
    between: np.ndarray
    between_sum: np.ndarray
    off_grid: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n(self) -> int:
        """Non-missing values counted."""
        return int(self.at.sum() + self.between.sum())


@dataclass(frozen=True, eq=False)
class DriftCounts:
    """What the drift statistics need from one period (mergeable).

    Attributes
    ----------
    summary : PeriodSummary
        Bins and categories (:mod:`clinval.profile`).
    ecdf : dict[str, EcdfCounts]
        Per numeric column.
    """

    summary: PeriodSummary
    ecdf: dict[str, EcdfCounts]


@dataclass(frozen=True, eq=False)
class PerformanceCounts:
    """Sufficient statistics for a period's performance (mergeable).

    Attributes
    ----------
    n_rows : int
        Rows of the period.
    n_missing_risk : int
        Rows without a predicted risk (left out of everything below).
    sum_risk_all, sum_risk_sq_all : float
        Sum of risk and of risk squared over rows with a risk (labelled or not).
    n_labelled : int
        Rows with a risk and a label.
    events : int
        Labelled rows with outcome 1.
    sum_risk : float
        Sum of risk over labelled rows (expected events).
    sum_squared_error, sum_squared_error_sq : float
        Sums of ``(risk - label)**2`` and of its square over labelled rows.
    bin_counts : numpy.ndarray
        int64, shape (2, risk_bins): labelled rows per outcome (row 0: non-events,
        row 1: events) and risk-grid bin (ascending risk).
    bin_logit_sums : numpy.ndarray
        float64, same shape: sum of ``logit(risk)`` (risk clipped as in
        :mod:`clinval.performance`) per outcome and bin.
    risk_resolution : int
        Risk-grid bins per unit of logit (the profile's).
    """

    n_rows: int
    n_missing_risk: int
    sum_risk_all: float
    sum_risk_sq_all: float
    n_labelled: int
    events: int
    sum_risk: float
    sum_squared_error: float
    sum_squared_error_sq: float
    bin_counts: np.ndarray
    bin_logit_sums: np.ndarray
    risk_resolution: int

    @property
    def n_scored(self) -> int:
        """Rows with a predicted risk."""
        return self.n_rows - self.n_missing_risk


@dataclass(frozen=True, eq=False)
class PeriodCounts:
    """Everything streamed about one period; :func:`merge_period_counts` adds two."""

    inputs: DriftCounts
    prediction: DriftCounts | None
    performance: PerformanceCounts


@dataclass(frozen=True, eq=False)
class LogSummary:
    """A whole prediction log, streamed.

    Attributes
    ----------
    periods : dict[str, PeriodCounts]
        In order of first appearance in the log.
    n_rows : int
        Rows read.
    n_without_period : int
        Rows whose period is missing (left out).
    n_batches : int
        Batches read.
    largest_batch : int
        Rows in the largest batch (what was in memory at once).
    """

    periods: dict[str, PeriodCounts]
    n_rows: int
    n_without_period: int
    n_batches: int
    largest_batch: int


def _where(row_offset: int | None) -> str:
    return "" if row_offset is None else f" (in the batch starting at data row {row_offset + 1})"


def _at_row(index: pd.Index, bad: np.ndarray, row_offset: int | None) -> str:
    """Where the first bad value is: its data row in the log (1-based) or its index label."""
    label = index[int(np.flatnonzero(bad)[0])]
    if row_offset is None or not isinstance(label, (int, np.integer)):
        return f" (index {label!r})"
    return f" (data row {row_offset + int(label) + 1})"  # a streamed batch's index counts its rows from 0


def _labels(series: pd.Series, column: str, row_offset: int | None) -> np.ndarray:
    """Labels as float64 0/1 with NaN for missing; refuses anything else."""
    try:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise StreamError(ERR_LABEL_TYPE.format(column=column, dtype=series.dtype, where=_where(row_offset))) from None
    bad = ~(np.isnan(values) | (values == 0) | (values == 1))
    if bad.any():
        shown = ", ".join(repr(v) for v in pd.unique(values[bad])[:5].tolist())
        raise StreamError(ERR_LABEL.format(column=column, values=shown, where=_at_row(series.index, bad, row_offset)))
    return values


def _risks(frame: pd.DataFrame, column: str, row_offset: int | None) -> np.ndarray:
    values = _numeric_values(frame, column, _PATH_WHAT)
    bad = (values < 0) | (values > 1)
    if bad.any():
        raise StreamError(ERR_RISK.format(column=column, value=float(values[bad][0]), where=_at_row(frame.index, bad, row_offset)))
    return values


def _distinct_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Distinct values and counts of a sorted array, or None past :data:`_EXACT_OFF_GRID` (O(n), no sort)."""
    if values.size == 0:
        return values.astype(np.float64), np.zeros(0, dtype=np.int64)
    starts = run_starts(values)
    if starts.size > _EXACT_OFF_GRID:
        return None
    return values[starts].astype(np.float64), run_lengths(starts, values.size)


def _ecdf_counts(values: np.ndarray, grid: np.ndarray) -> EcdfCounts:
    """Count sorted non-missing values on a grid (sorted keys make the search 5x faster)."""
    position = np.searchsorted(grid, values, side="left")
    equal = grid[np.minimum(position, grid.size - 1)] == values if grid.size else np.zeros(values.size, dtype=bool)
    between = position[~equal]
    return EcdfCounts(
        at=np.bincount(position[equal], minlength=grid.size).astype(np.int64),
        between=np.bincount(between, minlength=grid.size + 1).astype(np.int64),
        # astype: bincount returns int64 for empty input even with float weights
        between_sum=np.bincount(between, weights=values[~equal], minlength=grid.size + 1).astype(np.float64),
        off_grid=_distinct_sorted(values[~equal]),
    )


def _drift_counts(frame: pd.DataFrame, reference: ReferenceProfile, grids: Mapping[str, np.ndarray]) -> DriftCounts:
    """Bins, categories and ECDF counts of one chunk.

    The pieces of :func:`clinval.profile.summarise_period`, so that each numeric column
    is sorted once for both its bins and its ECDF counts (sorting is most of the cost).
    """
    _check_columns(frame, reference.features, _PATH_WHAT)
    numeric, ecdf = {}, {}
    for name, column_profile in reference.numeric.items():
        ordered, n_missing = _sorted_non_missing(_numeric_values(frame, name, _PATH_WHAT))
        numeric[name] = _summarise_numeric_sorted(column_profile, ordered, n_missing)
        ecdf[name] = _ecdf_counts(ordered, grids[name])
    categorical = {name: _summarise_categorical(p, frame[name]) for name, p in reference.categorical.items()}
    return DriftCounts(summary=PeriodSummary(n_rows=len(frame), numeric=numeric, categorical=categorical), ecdf=ecdf)


def _risk_bins(risk: np.ndarray, resolution: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Risk-grid bin of each risk and its (clipped) logit."""
    logit = _risk.logit(risk)
    index = np.floor((logit + RISK_LOGIT_LIMIT) * resolution).astype(np.int64)
    return np.clip(index, 0, n_bins - 1), logit


def _performance_counts(risk: np.ndarray, label: np.ndarray, profile: StreamProfile) -> PerformanceCounts:
    scored = ~np.isnan(risk)
    labelled = scored & ~np.isnan(label)
    r, y = risk[labelled], label[labelled]
    index, logit = _risk_bins(r, profile.risk_resolution, profile.risk_bins)
    flat = index + profile.risk_bins * y.astype(np.int64)  # row 1 holds the events
    squared_error = (r - y) ** 2
    size = 2 * profile.risk_bins
    return PerformanceCounts(
        n_rows=int(risk.size), n_missing_risk=int(risk.size - scored.sum()),
        sum_risk_all=float(risk[scored].sum()), sum_risk_sq_all=float(np.square(risk[scored]).sum()),
        n_labelled=int(r.size), events=int(y.sum()), sum_risk=float(r.sum()),
        sum_squared_error=float(squared_error.sum()), sum_squared_error_sq=float(np.square(squared_error).sum()),
        bin_counts=np.bincount(flat, minlength=size).astype(np.int64).reshape(2, -1),
        bin_logit_sums=np.bincount(flat, weights=logit, minlength=size).astype(np.float64).reshape(2, -1),
        risk_resolution=profile.risk_resolution,
    )


def _period_counts(frame: pd.DataFrame, profile: StreamProfile, columns: LogColumns, row_offset: int | None) -> PeriodCounts:
    risk = _risks(frame, columns.risk, row_offset)
    prediction = None
    if profile.prediction is not None:
        risk_frame = pd.DataFrame({profile.prediction.features[0]: risk}, copy=False)
        prediction = _drift_counts(risk_frame, profile.prediction, profile.grids)
    return PeriodCounts(
        inputs=_drift_counts(frame, profile.features, profile.grids),
        prediction=prediction,
        performance=_performance_counts(risk, _labels(frame[columns.label], columns.label, row_offset), profile),
    )


def _period_key(value: object) -> str:
    """A period as text; 2021.0 reads 2021 (an integer column with missing values arrives as floats)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def summarise_chunk(
    frame: pd.DataFrame, profile: StreamProfile, *, columns: LogColumns = LogColumns(), row_offset: int | None = None
) -> dict[str, PeriodCounts]:
    """Count one in-memory chunk of a prediction log, period by period.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of the log: the profiled features and the period, label and risk columns.
    profile : StreamProfile
    columns : LogColumns
    row_offset : int or None
        Rows of the log before this chunk, for error messages.

    Returns
    -------
    dict[str, PeriodCounts]
        Per period (its value as text; integral numbers without ".0"), in order of
        first appearance; rows without a period are left out.
    """
    missing = [c for c in (columns.period, columns.label, columns.risk, *profile.features.features) if c not in frame.columns]
    if missing:
        raise StreamError(ERR_COLUMN.format(path="chunk", column=missing[0], role="required", what=_PATH_WHAT,
                                            available=", ".join(map(str, frame.columns))))
    groups = frame.groupby(columns.period, observed=True, sort=False, dropna=True).indices
    out: dict[str, PeriodCounts] = {}
    for value, index in groups.items():
        part = frame if index.size == len(frame) else frame.iloc[index]
        key = _period_key(value)
        counts = _period_counts(part, profile, columns, row_offset)
        out[key] = merge_period_counts(out[key], counts) if key in out else counts
    return out


# --------------------------------------------------------------------------- merging
def _merge_ecdf(a: EcdfCounts, b: EcdfCounts, name: str) -> EcdfCounts:
    if a.at.shape != b.at.shape:
        raise StreamError(ERR_MERGE.format(detail=f"the ECDF grids of '{name}' differ"))
    return EcdfCounts(at=a.at + b.at, between=a.between + b.between, between_sum=a.between_sum + b.between_sum,
                      off_grid=_merge_distinct(a.off_grid, b.off_grid))


def _merge_distinct(
    a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    if a is None or b is None:
        return None
    values = np.union1d(a[0], b[0])
    if values.size > _EXACT_OFF_GRID:
        return None
    counts = np.zeros(values.size, dtype=np.int64)
    for part_values, part_counts in (a, b):
        counts[np.searchsorted(values, part_values)] += part_counts
    return values, counts


def _merge_drift(a: DriftCounts, b: DriftCounts) -> DriftCounts:
    if list(a.ecdf) != list(b.ecdf):
        raise StreamError(ERR_MERGE.format(detail="numeric columns differ"))
    return DriftCounts(summary=merge_summaries(a.summary, b.summary),
                       ecdf={name: _merge_ecdf(x, b.ecdf[name], name) for name, x in a.ecdf.items()})


def _merge_performance(a: PerformanceCounts, b: PerformanceCounts) -> PerformanceCounts:
    if a.bin_counts.shape != b.bin_counts.shape or a.risk_resolution != b.risk_resolution:
        raise StreamError(ERR_MERGE.format(detail="the risk grids differ"))
    return PerformanceCounts(
        n_rows=a.n_rows + b.n_rows, n_missing_risk=a.n_missing_risk + b.n_missing_risk,
        sum_risk_all=a.sum_risk_all + b.sum_risk_all, sum_risk_sq_all=a.sum_risk_sq_all + b.sum_risk_sq_all,
        n_labelled=a.n_labelled + b.n_labelled, events=a.events + b.events, sum_risk=a.sum_risk + b.sum_risk,
        sum_squared_error=a.sum_squared_error + b.sum_squared_error,
        sum_squared_error_sq=a.sum_squared_error_sq + b.sum_squared_error_sq,
        bin_counts=a.bin_counts + b.bin_counts, bin_logit_sums=a.bin_logit_sums + b.bin_logit_sums,
        risk_resolution=a.risk_resolution,
    )


def merge_period_counts(a: PeriodCounts, b: PeriodCounts) -> PeriodCounts:
    """Add the counts of two parts of one period (associative and commutative).

    Raises
    ------
    ValueError
        The counts were made with different stream profiles.
    """
    if (a.prediction is None) != (b.prediction is None):
        raise StreamError(ERR_MERGE.format(detail="one has prediction counts, the other not"))
    return PeriodCounts(
        inputs=_merge_drift(a.inputs, b.inputs),
        prediction=None if a.prediction is None else _merge_drift(a.prediction, b.prediction),
        performance=_merge_performance(a.performance, b.performance),
    )


def merge_chunks(a: Mapping[str, PeriodCounts], b: Mapping[str, PeriodCounts]) -> dict[str, PeriodCounts]:
    """Merge two chunk summaries period by period (periods of ``a`` first)."""
    out = dict(a)
    for period, counts in b.items():
        out[period] = merge_period_counts(out[period], counts) if period in out else counts
    return out


# --------------------------------------------------------------------------- reading
def _dataset(path: str | os.PathLike):
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise StreamError(ERR_NO_FILE.format(path=path, what=_PATH_WHAT))
    try:
        return ds.dataset(path, format="parquet")
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise StreamError(ERR_READ.format(path=path, what=_PATH_WHAT, reason=str(error).splitlines()[0])) from None


def _batches(dataset, columns: list[str], dictionary: list[str], batch_rows: int):
    """Record batches, one file and one row group at a time, in file-name order.

    Memory is one row group plus one batch. The dataset scanner reads many row groups
    ahead (700 MB measured on a 10M-row file with a slow consumer) and a ParquetFile
    with ``pre_buffer`` keeps every row group it read (apache/arrow#39808: 230 MB after
    10M rows, growing); without pre-buffering Arrow's memory stays flat (26 MB). Columns
    in ``dictionary`` arrive as pandas categoricals (counting codes beats counting strings).
    """
    import pyarrow.parquet as pq

    for fragment in sorted(dataset.get_fragments(), key=lambda f: f.path):
        try:
            names = fragment.physical_schema.names
            absent = [c for c in columns if c not in names]
            if absent:
                raise StreamError(ERR_COLUMN.format(path=fragment.path, column=absent[0], role="required", what=_PATH_WHAT,
                                                    available=", ".join(names[:30])))
            with fragment.filesystem.open_input_file(fragment.path) as handle:
                parquet = pq.ParquetFile(handle, read_dictionary=[c for c in dictionary if c in names], pre_buffer=False)
                yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
        except (OSError, KeyError, ValueError, TypeError) as error:  # pyarrow's ArrowInvalid is a ValueError
            if isinstance(error, StreamError):
                raise
            raise StreamError(ERR_READ.format(path=fragment.path, what=_PATH_WHAT, reason=str(error).splitlines()[0])) from None


def _check_log_columns(dataset, path: str | os.PathLike, roles: Mapping[str, str]) -> None:
    names = set(dataset.schema.names)
    for column, role in roles.items():
        if column not in names:
            available = ", ".join(dataset.schema.names[:30])
            raise StreamError(ERR_COLUMN.format(path=path, column=column, role=role, what=_PATH_WHAT, available=available))


def summarise_log(
    path: str | os.PathLike,
    profile: StreamProfile,
    *,
    columns: LogColumns = LogColumns(),
    batch_rows: int = 131_072,
    on_batch: Callable[[int], None] | None = None,
) -> LogSummary:
    """Stream a Parquet prediction log and count every period in bounded memory.

    Parameters
    ----------
    path : str or os.PathLike
        A Parquet file or a folder of Parquet files (``pyarrow.dataset``).
    profile : StreamProfile
    columns : LogColumns
    batch_rows : int, default 131072
        Most rows counted at once; pyarrow holds one row group of one file besides.
    on_batch : callable or None
        Called with the number of rows of each batch once it is counted (progress bars).

    Returns
    -------
    LogSummary

    Raises
    ------
    StreamError
        A missing file or column, labels other than 0/1, risks outside [0, 1]; the
        message names the file, the column and the first row of the batch.
    """
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, (int, np.integer)) or batch_rows < 1:
        raise StreamError(ERR_BATCH_ROWS.format(value=batch_rows))
    features = profile.features
    dataset = _dataset(path)
    roles = {columns.period: "period", columns.label: "label", columns.risk: "predicted risk",
             **{name: "feature" for name in features.features}}
    _check_log_columns(dataset, path, roles)
    periods: dict[str, PeriodCounts] = {}
    n_rows = n_without = n_batches = largest = 0
    for batch in _batches(dataset, list(roles), [columns.period, *features.categorical], int(batch_rows)):
        if batch.num_rows == 0:
            continue
        frame = batch.to_pandas()
        try:
            chunk = summarise_chunk(frame, profile, columns=columns, row_offset=n_rows)
        except (TypeError, ValueError) as error:
            if isinstance(error, StreamError):
                raise StreamError(f"{path}: {error}") from None
            raise StreamError(f"{path}: {error}{_where(n_rows)}") from None
        periods = merge_chunks(periods, chunk)
        n_without += int(frame[columns.period].isna().sum())
        n_rows += len(frame)
        n_batches += 1
        largest = max(largest, len(frame))
        if on_batch is not None:
            on_batch(len(frame))
    return LogSummary(periods=periods, n_rows=n_rows, n_without_period=n_without, n_batches=n_batches,
                      largest_batch=largest)


def count_log_rows(path: str | os.PathLike) -> int:
    """Rows of a Parquet prediction log, from the files' metadata (nothing is decoded)."""
    return int(_dataset(path).count_rows())


def read_reference_risk(
    path: str | os.PathLike, *, columns: LogColumns = LogColumns(), reference_period: str = REFERENCE
) -> np.ndarray:
    """Predicted risks of the log's reference rows (e.g. the pipeline's hold-out), one pass.

    Only the period and risk columns are read, and only matching rows are kept.

    Returns
    -------
    numpy.ndarray
        float64 risks (missing ones dropped).

    Raises
    ------
    StreamError
        No such file or column, or no row of that period.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = _dataset(path)
    _check_log_columns(dataset, path, {columns.period: "period", columns.risk: "predicted risk"})
    is_reference = ds.field(columns.period).cast(pa.string()) == str(reference_period)
    table = dataset.to_table(columns=[columns.risk], filter=is_reference)
    if table.num_rows == 0:
        raise StreamError(ERR_NO_REFERENCE_RISK.format(path=path, column=columns.period, period=reference_period))
    values = _risks(table.to_pandas(), columns.risk, None)
    return values[~np.isnan(values)]


# --------------------------------------------------------------------------- drift
def _surrogate(grid: np.ndarray, counts: EcdfCounts) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values with counts having the period's exact ECDF at and just left of every grid point.

    The values strictly between two grid points sit at their mean, nudged to stay
    strictly inside the interval; so both the counts left of each point and each
    interval's integral of the ECDF are those of the real values. When the period kept
    its off-grid values (few distinct ones) they are returned as they are: the exact sample.
    """
    if counts.off_grid is not None:
        values = np.concatenate((grid, counts.off_grid[0]))
        weights = np.concatenate((counts.at, counts.off_grid[1]))
        order = np.argsort(values, kind="stable")
        keep = weights[order] > 0
        return values[order][keep], weights[order][keep]
    occupied = counts.between > 0
    mean = np.divide(counts.between_sum, counts.between, out=np.zeros_like(counts.between_sum), where=occupied)
    low = np.nextafter(np.concatenate(([-np.inf], grid)), np.inf)
    high = np.nextafter(np.concatenate((grid, [np.inf])), -np.inf)
    values = np.empty(2 * grid.size + 1)
    weights = np.empty(2 * grid.size + 1, dtype=np.int64)
    values[0::2], weights[0::2] = np.clip(mean, low, high), counts.between
    values[1::2], weights[1::2] = grid, counts.at
    keep = weights > 0
    return values[keep], weights[keep]


def _bounds(profile: NumericProfile, grid: np.ndarray, inside: np.ndarray, counts: EcdfCounts) -> tuple[float, float]:
    """Error bounds of the streamed KS statistic and of the normalised Wasserstein distance."""
    n = counts.n
    if n == 0 or counts.off_grid is not None:  # nothing counted, or the exact sample kept
        return 0.0, 0.0
    share = counts.between / n
    holds_reference = inside > 0
    ks_bound = float(share[holds_reference].max()) if holds_reference.any() else 0.0
    values, value_counts = _support_with_counts(profile)
    reference_cdf = np.concatenate(([0], np.cumsum(value_counts)))[np.searchsorted(values, grid, side="right")] / profile.n
    current_cdf = (np.cumsum(counts.between[:-1]) + np.cumsum(counts.at)) / n  # at each grid point
    gap_left = reference_cdf[:-1] - current_cdf[:-1]  # F_ref - F_cur at the left end of interior intervals
    crossing = (gap_left > 0) & (gap_left - share[1:-1] < 0)
    uncertain = crossing | holds_reference[1:-1]
    w_bound = float(np.sum(share[1:-1][uncertain] * np.diff(grid)[uncertain]))
    return ks_bound, (w_bound / profile.sd if profile.sd > 0 else float("nan"))


def _drift_rows(reference: ReferenceProfile, profile: StreamProfile, counts: DriftCounts, settings: DriftSettings) -> pd.DataFrame:
    if settings.n_bins != reference.n_bins:
        raise StreamError(_drift.ERR_BINS_MISMATCH.format(profile_bins=reference.n_bins, settings_bins=settings.n_bins))
    n_rows = counts.summary.n_rows
    rows = []
    for name, numeric in reference.numeric.items():
        grid, ecdf = profile.grids[name], counts.ecdf[name]
        row = _drift._numeric_row(numeric, _surrogate(grid, ecdf), counts.summary.numeric[name], n_rows, settings)
        row["statistic_bound"], row["wasserstein_bound"] = _bounds(numeric, grid, profile.grid_inside[name], ecdf)
        rows.append(row)
    for name, categorical in reference.categorical.items():
        row = _drift._categorical_row(categorical, counts.summary.categorical[name], n_rows, settings)
        row["statistic_bound"], row["wasserstein_bound"] = 0.0, float("nan")
        rows.append(row)
    return _drift._decide(pd.DataFrame(rows), settings)[list(DRIFT_COLUMNS)]


def drift_table(profile: StreamProfile, counts: PeriodCounts, *, settings: DriftSettings = DriftSettings()) -> pd.DataFrame:
    """Input drift of one period from its counts, decided as :func:`clinval.drift.compare_period` does.

    Returns
    -------
    pandas.DataFrame
        One row per feature, columns :data:`DRIFT_COLUMNS`: those of
        :func:`clinval.drift.compare_period` (same values where exact, see the module
        docstring) plus ``statistic_bound`` (largest possible |KS D - exact D|; 0 when
        exact and for chi-square) and ``wasserstein_bound`` (same for
        ``wasserstein_norm``; NaN for categorical features).
    """
    return _drift_rows(profile.features, profile, counts.inputs, settings)


def prediction_drift_table(
    profile: StreamProfile, counts: PeriodCounts, *, settings: DriftSettings = DriftSettings()
) -> pd.DataFrame:
    """Drift of the predicted risk of one period (one test: ``q_value == p_value``).

    Returns
    -------
    pandas.DataFrame
        One row, columns :data:`DRIFT_COLUMNS`; empty when the profile has no
        reference risk.
    """
    if profile.prediction is None or counts.prediction is None:
        return pd.DataFrame(columns=list(DRIFT_COLUMNS))
    return _drift_rows(profile.prediction, profile, counts.prediction, settings)


# --------------------------------------------------------------------------- performance
def _row(estimate: _performance.Estimate, error_bound: float) -> dict:
    return {**estimate.as_dict(), "error_bound": error_bound}


def _missing(metric: str, method: str, n: int, status: str) -> dict:
    return _row(_performance._missing(metric, method, n, status), float("nan"))


def _class_status(n: int, events: int, *, min_n: int = 2, min_per_class: int = 1) -> str | None:
    """The insufficient-data rule of :mod:`clinval.performance`, on counts."""
    if n < min_n:
        return _performance._ERR_TOO_FEW.format(n=n, min_n=min_n)
    if events == 0 or events == n:
        return _performance._ERR_ONE_CLASS.format(n_pos=events, n_neg=n - events)
    if min(events, n - events) < min_per_class:
        return _performance._ERR_FEW_PER_CLASS.format(n_pos=events, n_neg=n - events, k=min_per_class)
    return None


def _normal_interval(metric: str, total: float, total_sq: float, n: int, confidence: float, method: str) -> dict:
    """Mean with a normal-approximation interval, from a sum and a sum of squares."""
    mean = total / n
    variance = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    half = _performance._z(confidence) * math.sqrt(variance / n)
    return _row(_performance.Estimate(metric=metric, value=mean, lower=mean - half, upper=mean + half, method=method, n=n), 0.0)


def _auroc(counts: PerformanceCounts, confidence: float) -> dict:
    method = "DeLong on the risk grid"
    n, events = counts.n_labelled, counts.events
    problem = _class_status(n, events, min_per_class=2)
    if problem:
        return _missing("AUROC", method, n, problem)
    negative, positive = counts.bin_counts.astype(np.float64)
    n_neg, n_pos = float(n - events), float(events)
    v10 = (np.cumsum(negative) - 0.5 * negative) / n_neg  # per event in the bin: non-events below + half the ties
    v01 = (n_pos - np.cumsum(positive) + 0.5 * positive) / n_pos  # per non-event: events above + half the ties
    auc = float(np.dot(positive, v10) / n_pos)
    variance = (np.dot(positive, (v10 - auc) ** 2) / (n_pos - 1)) / n_pos + (np.dot(negative, (v01 - auc) ** 2) / (n_neg - 1)) / n_neg
    z = _performance._z(confidence)
    if auc <= 0 or auc >= 1 or variance <= 0:
        lower, upper = auc, auc
    else:  # logit-transformed interval, as performance.auroc
        logit, se = math.log(auc / (1 - auc)), math.sqrt(variance) / (auc * (1 - auc))
        lower, upper = (1 / (1 + math.exp(-(logit + s * z * se))) for s in (-1, 1))
    tied_pairs = float(np.dot(positive, negative)) / (n_pos * n_neg)
    estimate = _performance.Estimate(metric="AUROC", value=auc, lower=lower, upper=upper, method=method, n=n)
    return _row(estimate, 0.5 * tied_pairs)


def _grouped_logit(counts: PerformanceCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcome, mean logit and frequency of every occupied (outcome, risk bin) cell."""
    occupied = counts.bin_counts > 0
    outcome = np.broadcast_to(np.array([[0.0], [1.0]]), occupied.shape)[occupied]
    weight = counts.bin_counts[occupied].astype(np.float64)
    return outcome, counts.bin_logit_sums[occupied] / weight, weight


def _calibration(counts: PerformanceCounts, confidence: float) -> list[dict]:
    # the GLM module alone: statsmodels.api imports seconds of unrelated modules
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM

    n, events = counts.n_labelled, counts.events
    resolution = counts.risk_resolution
    width_sq = (1.0 / resolution) ** 2
    rows = []
    method = _performance._INTERCEPT_METHOD + ", risk grid"
    problem = _class_status(n, events)
    if problem:
        rows.append(_missing("calibration intercept", method, n, problem))
    else:
        y, logit, weight = _grouped_logit(counts)
        fit = GLM(y, np.ones((y.size, 1)), family=families.Binomial(), offset=logit, freq_weights=weight).fit()
        # the sandwich (HC0) SE of performance.calibration_intercept, summed over the cells:
        # statsmodels' HC0 would treat each weighted cell as one observation
        mu = fit.fittedvalues
        se = math.sqrt(float(np.sum(weight * (y - mu) ** 2))) / float(np.sum(weight * mu * (1 - mu)))
        z = _performance._z(confidence)
        low, high = fit.params[0] - z * se, fit.params[0] + z * se
        score_error = 0.5 * _MAX_EXPIT_CURVATURE * n * width_sq
        bound = float(fit.cov_params()[0, 0] * score_error)
        rows.append(_row(_performance.Estimate(metric="calibration intercept", value=float(fit.params[0]), lower=float(low),
                                               upper=float(high), method=method, n=n), bound))
    method = "logistic recalibration (Wald), risk grid"
    problem = _class_status(n, events, min_n=3, min_per_class=_performance._MIN_EVENTS_FOR_SLOPE)
    y, logit, weight = _grouped_logit(counts) if not problem else (None, None, None)
    if not problem and np.ptp(logit) == 0:
        problem = "insufficient data: all predicted risks are equal"
    if problem:
        rows.append(_missing("calibration slope", method, n, problem))
        return rows
    fit = GLM(y, np.column_stack([np.ones_like(logit), logit]), family=families.Binomial(), freq_weights=weight).fit()
    low, high = fit.conf_int(alpha=1 - confidence)[1]
    slope = abs(float(fit.params[1]))
    largest = float(np.abs(logit).max()) + 1.0 / resolution
    # second derivatives in the logit of expit(b0 + b1 l) and of l * expit(b0 + b1 l)
    curvature = np.array([slope**2 * _MAX_EXPIT_CURVATURE, 2 * slope * _MAX_EXPIT_SLOPE + largest * slope**2 * _MAX_EXPIT_CURVATURE])
    bound = float((np.abs(fit.cov_params()) @ (0.5 * curvature * n * width_sq))[1])
    rows.append(_row(_performance.Estimate(metric="calibration slope", value=float(fit.params[1]), lower=float(low),
                                           upper=float(high), method=method, n=n), bound))
    return rows


def performance_table(counts: PeriodCounts, *, confidence: float = 0.95) -> pd.DataFrame:
    """Performance of one period from its counts, as :func:`clinval.performance.evaluate` shows it.

    Parameters
    ----------
    counts : PeriodCounts
    confidence : float, default 0.95
        Two-sided level of every interval.

    Returns
    -------
    pandas.DataFrame
        Rows: mean predicted risk (all scored rows), prevalence (Wilson), AUROC
        (DeLong), Brier (normal CI), calibration intercept and slope (Wald), O/E
        (delta method on log(O/E)); columns :data:`PERFORMANCE_COLUMNS`. ``error_bound``
        bounds |value - in-memory value| beyond round-off (0 = exact); a period without
        labels says so in ``status``.
    """
    p = counts.performance
    rows = []
    if p.n_scored >= 2:
        rows.append(_normal_interval("mean predicted risk", p.sum_risk_all, p.sum_risk_sq_all, p.n_scored, confidence,
                                     "normal approximation"))
    else:
        rows.append(_missing("mean predicted risk", "normal approximation", p.n_scored,
                             _performance._ERR_TOO_FEW.format(n=p.n_scored, min_n=2)))
    n, events = p.n_labelled, p.events
    if n == 0:
        status = _performance.LABELS_PENDING
        for metric in ("prevalence", "AUROC", "Brier", "calibration intercept", "calibration slope", "O/E"):
            rows.append(_missing(metric, "", 0, status))
        return pd.DataFrame(rows, columns=list(PERFORMANCE_COLUMNS))
    interval = stats.binomtest(events, n).proportion_ci(confidence_level=confidence, method="wilson")
    rows.append(_row(_performance.Estimate(metric="prevalence", value=events / n, lower=float(interval.low),
                                           upper=float(interval.high), method="Wilson", n=n), 0.0))
    rows.append(_auroc(p, confidence))
    if n >= _performance._MIN_BOOTSTRAP_N:
        rows.append(_normal_interval("Brier", p.sum_squared_error, p.sum_squared_error_sq, n, confidence,
                                     "normal approximation"))
    else:
        rows.append(_missing("Brier", "normal approximation", n,
                             _performance._ERR_TOO_FEW.format(n=n, min_n=_performance._MIN_BOOTSTRAP_N)))
    rows.extend(_calibration(p, confidence))
    method = "delta method on log(O/E)"
    if events == 0:
        rows.append(_missing("O/E", method, n, "insufficient data: no observed events"))
    else:
        ratio = events / p.sum_risk
        se = math.sqrt((1 - events / n) / events)
        z = _performance._z(confidence)
        rows.append(_row(_performance.Estimate(metric="O/E", value=ratio, lower=ratio * math.exp(-z * se),
                                               upper=ratio * math.exp(z * se), method=method, n=n), 0.0))
    return pd.DataFrame(rows, columns=list(PERFORMANCE_COLUMNS))


# --------------------------------------------------------------------------- all periods
@dataclass(frozen=True, eq=False)
class StreamTables:
    """All periods of a streamed log, long format (a leading ``period`` column).

    Attributes
    ----------
    features : pandas.DataFrame
        :func:`drift_table` per period; FDR controlled within each period.
    predictions : pandas.DataFrame
        :func:`prediction_drift_table` per period (empty without a reference risk).
    performance : pandas.DataFrame
        :func:`performance_table` per period.
    n_rows : dict[str, int]
        Rows per period.
    """

    features: pd.DataFrame
    predictions: pd.DataFrame
    performance: pd.DataFrame
    n_rows: dict[str, int]

    def drift_summary(self) -> pd.DataFrame:
        """Per period: rows, features tested, drifted (FDR), which, and prediction drift."""
        out = []
        predictions = self.predictions.set_index("period") if len(self.predictions) else None
        for period, rows in self.features.groupby("period", sort=False):
            drifted = rows.loc[rows["drifted"], "feature"].astype(str).tolist()
            entry = {"period": period, "rows": self.n_rows[period], "features tested": int(rows["status"].eq(STATUS_OK).sum()),
                     "drifted (FDR)": len(drifted), "which": ", ".join(drifted) or "none"}
            if predictions is not None and period in predictions.index:
                entry["prediction drifted"] = bool(predictions.loc[period, "drifted"])
            out.append(entry)
        return pd.DataFrame(out)


def _long(frames: Mapping[str, pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    parts = [frame.assign(period=period) for period, frame in frames.items() if len(frame)]
    if not parts:
        return pd.DataFrame(columns=["period", *columns])
    return pd.concat(parts, ignore_index=True)[["period", *columns]]


def stream_tables(
    profile: StreamProfile, summary: LogSummary, *, settings: DriftSettings = DriftSettings(), confidence: float = 0.95
) -> StreamTables:
    """Drift and performance tables for every period of a streamed log."""
    periods = summary.periods
    return StreamTables(
        features=_long({p: drift_table(profile, c, settings=settings) for p, c in periods.items()}, DRIFT_COLUMNS),
        predictions=_long({p: prediction_drift_table(profile, c, settings=settings) for p, c in periods.items()}, DRIFT_COLUMNS),
        performance=_long({p: performance_table(c, confidence=confidence) for p, c in periods.items()}, PERFORMANCE_COLUMNS),
        n_rows={p: c.inputs.summary.n_rows for p, c in periods.items()},
    )
