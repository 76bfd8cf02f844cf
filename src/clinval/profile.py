"""The reference profile and mergeable per-period summaries.

A *reference profile* is computed once from the reference period and everything a
production period is compared with comes from it:

* per numeric feature: the sorted non-missing reference values (needed for the exact
  Kolmogorov-Smirnov statistic and Wasserstein distance; stored as distinct values with
  counts when ties make that at most half the size), the reference-quantile bin
  edges with the reference count per bin (for PSI, Jensen-Shannon), mean, standard
  deviation (population, ``ddof=0``), interquartile range, minimum, maximum and the
  missing count;
* per categorical feature: the reference categories with their counts (missing values,
  ``None``/``NaN``, are counted separately and are not a category) and the missing
  count.

A *period summary* holds what a production period contributes to the binned
statistics: counts per reference bin and per reference category, counts of categories
unseen in the reference, missing counts and row counts. Summaries are mergeable
(:func:`merge_summaries` adds them), so a database or a cluster could compute them as
group-by aggregates where the data lives; :mod:`clinval.drift` computes PSI,
Jensen-Shannon and chi-square from them.

Binning rule (documented once, used everywhere)
-----------------------------------------------
Interior edges are the inverted-CDF reference quantiles at ``k / n_bins``
(``k = 1 .. n_bins - 1``), i.e. actual reference values; duplicates and edges equal to
the reference maximum are dropped, so with ties (integer ages, 0/1 flags) there are
fewer bins, and every reference bin is non-empty. Bins are right-closed,
``(-inf, e1], (e1, e2], ..., (e_last, +inf)``: production values outside the reference
range fall into the outer bins.

Public API
----------
``build_reference_profile(frame, *, numeric, categorical, n_bins=10, n_threads=None)``
    -> :class:`ReferenceProfile`
``summarise_period(frame, profile)`` -> :class:`PeriodSummary`
``merge_summaries(a, b)`` -> :class:`PeriodSummary`
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from clinval.errors import InputError, InputTypeError, MissingInputError
from clinval.vocabulary import category_key

__all__ = [
    "CategoricalPeriodSummary",
    "CategoricalProfile",
    "NumericPeriodSummary",
    "NumericProfile",
    "PeriodSummary",
    "ReferenceProfile",
    "build_reference_profile",
    "merge_summaries",
    "summarise_period",
]

ERR_NOT_A_DATAFRAME = "expected a pandas DataFrame for {what}, got {type_name}"
ERR_MISSING_COLUMN = "column '{column}' is not in the {what} (columns: {available})"
ERR_NOT_NUMERIC = (
    "column '{column}' is declared numeric but has dtype {dtype} in the {what}; declare it "
    "categorical or convert it to numbers"
)
ERR_DUPLICATE_FEATURE = "column '{column}' is listed more than once (numeric and/or categorical)"
ERR_NO_FEATURES = "no features given: pass at least one numeric or categorical column"
ERR_N_BINS = "n_bins must be an integer >= 2, got {n_bins!r}"
ERR_MERGE_MISMATCH = (
    "cannot merge summaries of different profiles: feature sets or bins differ ({detail})"
)
ERR_INFINITE = "column '{column}' contains infinite values in the {what}; replace them by NaN or finite values"

_T = TypeVar("_T")


# --------------------------------------------------------------------------- profile
@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Reference profile of one numeric feature.

    Attributes
    ----------
    name : str
        Column name.
    support : numpy.ndarray
        Non-missing reference values, ascending, float64 (units of the column): all of
        them, or only the distinct ones when ``support_counts`` is given.
    support_counts : numpy.ndarray | None
        How often each ``support`` value occurs (int64), kept when ties make the pair at
        most half the size of all values (integer ages, scores, flags); None otherwise.
        Use :attr:`sorted_values` for all values.
    bin_edges : numpy.ndarray
        Interior right-closed bin edges (units of the column); ``len(bin_edges) + 1``
        bins.
    bin_counts : numpy.ndarray
        Reference count per bin (int64), all positive.
    n : int
        Number of non-missing reference values.
    n_missing : int
        Number of missing reference values.
    mean, sd, iqr, minimum, maximum : float
        Summary of the non-missing values (units of the column); ``sd`` is the
        population standard deviation (``ddof=0``), NaN when ``n == 0``.
    """

    name: str
    support: np.ndarray
    support_counts: np.ndarray | None
    bin_edges: np.ndarray
    bin_counts: np.ndarray
    n: int
    n_missing: int
    mean: float
    sd: float
    iqr: float
    minimum: float
    maximum: float

    @property
    def is_constant(self) -> bool:
        """True when the reference has at most one distinct non-missing value."""
        return self.n == 0 or self.minimum == self.maximum

    @property
    def sorted_values(self) -> np.ndarray:
        """All non-missing reference values, ascending (expanded from the support)."""
        if self.support_counts is None:
            return self.support
        return np.repeat(self.support, self.support_counts)

    @property
    def nbytes(self) -> int:
        """Memory held by the reference values (bytes)."""
        extra = 0 if self.support_counts is None else self.support_counts.nbytes
        return int(self.support.nbytes + extra)


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """Reference profile of one categorical feature.

    Attributes
    ----------
    name : str
        Column name.
    categories : tuple
        Reference categories (non-missing values seen in the reference), sorted by
        their string form for a stable order.
    counts : numpy.ndarray
        Reference count per category (int64), aligned with ``categories``.
    n : int
        Number of non-missing reference values.
    n_missing : int
        Number of missing reference values.
    """

    name: str
    categories: tuple
    counts: np.ndarray
    n: int
    n_missing: int


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Everything the drift statistics need from the reference period.

    Attributes
    ----------
    n_rows : int
        Rows in the reference frame.
    n_bins : int
        Requested number of quantile bins per numeric feature (ties may give fewer).
    numeric : dict[str, NumericProfile]
        Per numeric feature, in the order given.
    categorical : dict[str, CategoricalProfile]
        Per categorical feature, in the order given.
    """

    n_rows: int
    n_bins: int
    numeric: dict[str, NumericProfile] = field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """Numeric features then categorical features, in the order given."""
        return [*self.numeric, *self.categorical]


# --------------------------------------------------------------------------- summary
@dataclass(frozen=True, eq=False)
class NumericPeriodSummary:
    """Counts of one numeric feature in one period, on the reference bins.

    Attributes
    ----------
    bin_counts : numpy.ndarray
        Count per reference bin (int64).
    n : int
        Non-missing values.
    n_missing : int
        Missing values.
    total : float
        Sum of the non-missing values (units of the column); with ``n`` gives the mean.
    """

    bin_counts: np.ndarray
    n: int
    n_missing: int
    total: float


@dataclass(frozen=True, eq=False)
class CategoricalPeriodSummary:
    """Counts of one categorical feature in one period.

    Attributes
    ----------
    counts : numpy.ndarray
        Count per reference category (int64), aligned with the profile's categories.
    unseen : dict
        Count per category value not seen in the reference.
    n : int
        Non-missing values (reference categories plus unseen ones).
    n_missing : int
        Missing values.
    """

    counts: np.ndarray
    unseen: dict[Any, int]
    n: int
    n_missing: int

    @property
    def n_unseen(self) -> int:
        """Values whose category is not in the reference."""
        return int(sum(self.unseen.values()))


@dataclass(frozen=True, eq=False)
class PeriodSummary:
    """Mergeable summary of one production period against a reference profile.

    Attributes
    ----------
    n_rows : int
        Rows in the period.
    numeric : dict[str, NumericPeriodSummary]
    categorical : dict[str, CategoricalPeriodSummary]
    """

    n_rows: int
    numeric: dict[str, NumericPeriodSummary]
    categorical: dict[str, CategoricalPeriodSummary]


# --------------------------------------------------------------------------- helpers
def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _map_threads(fn: Callable[[Any], _T], items: Sequence[Any], n_threads: int | None) -> list[_T]:
    """Apply ``fn`` to items; threads help because numpy sorting releases the GIL."""
    workers = _default_threads() if n_threads is None else max(1, int(n_threads))
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _check_frame(frame: object, what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(ERR_NOT_A_DATAFRAME.format(what=what, type_name=type(frame).__name__))
    return frame


def _check_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    present = set(frame.columns)
    for column in columns:
        if column not in present:
            available = ", ".join(map(str, list(frame.columns)[:20]))
            raise MissingInputError(ERR_MISSING_COLUMN.format(column=column, what=what, available=available))


def _numeric_values(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """Column as float64 with NaN for missing; refuses non-numeric dtypes."""
    series = frame[column]
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not (
        pd.api.types.is_numeric_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
        and pd.api.types.is_numeric_dtype(dtype.categories.dtype)
    ):
        raise InputTypeError(ERR_NOT_NUMERIC.format(column=column, dtype=dtype, what=what))
    if dtype == np.float64:
        values = series.to_numpy()  # a view: the copy is made once, when sorting
    else:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise InputError(ERR_INFINITE.format(column=column, what=what))
    return values


def _sorted_non_missing(values: np.ndarray) -> tuple[np.ndarray, int]:
    missing = np.isnan(values)
    n_missing = int(missing.sum())
    kept = values[~missing] if n_missing else values.copy()
    kept.sort()
    return kept, n_missing


def _quantile_linear(sorted_values: np.ndarray, p: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    h = (sorted_values.size - 1) * p
    lo = int(np.floor(h))
    hi = min(lo + 1, sorted_values.size - 1)
    return float(sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo]))


def _quantile_edges(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior inverted-CDF quantile edges, unique, below the maximum."""
    m = sorted_values.size
    if m == 0:
        return np.empty(0, dtype=np.float64)
    k = np.arange(1, n_bins, dtype=np.int64)
    index = (k * m + n_bins - 1) // n_bins - 1  # ceil(k m / B) - 1: smallest x with F(x) >= k/B
    edges = np.unique(sorted_values[index])
    return edges[edges < sorted_values[-1]]


def _bin_counts_sorted(sorted_values: np.ndarray, edges: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """Counts per right-closed bin of sorted values (with multiplicities): O(B log n)."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    bounds = np.concatenate(([0], cuts, [sorted_values.size]))
    if counts is None:
        return np.diff(bounds).astype(np.int64)
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    return np.diff(cumulative[bounds]).astype(np.int64)


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first of each run of equal values in a sorted array (O(n), no sort)."""
    return np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))


def run_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    """Counts of the runs that begin at ``starts`` in an array of ``n`` values."""
    return np.diff(np.append(starts, n)).astype(np.int64)


def _compress_ties(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Distinct values and their counts when that at most halves the memory, else as is."""
    n = sorted_values.size
    if n < 64:
        return sorted_values, None
    n_distinct = int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1  # no index array for continuous columns
    if 4 * n_distinct > n:  # 16 bytes per distinct value against 8 per value
        return sorted_values, None
    starts = run_starts(sorted_values)
    return sorted_values[starts].copy(), run_lengths(starts, n)


def _value_counts(series: pd.Series) -> tuple[pd.Series, int]:
    """Counts of non-missing values and the missing count; fast for category dtype."""
    n_missing = int(series.isna().sum())
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    return counts, n_missing


def _numeric_profile(name: str, values: np.ndarray, n_bins: int) -> NumericProfile:
    sorted_values, n_missing = _sorted_non_missing(values)
    n = int(sorted_values.size)
    if n == 0:
        nan = float("nan")
        return NumericProfile(
            name=name, support=sorted_values, support_counts=None, bin_edges=np.empty(0), bin_counts=np.zeros(1, np.int64),
            n=0, n_missing=n_missing, mean=nan, sd=nan, iqr=nan, minimum=nan, maximum=nan,
        )
    edges = _quantile_edges(sorted_values, n_bins)
    mean = float(sorted_values.mean())
    support, support_counts = _compress_ties(sorted_values)
    return NumericProfile(
        name=name,
        support=support,
        support_counts=support_counts,
        bin_edges=edges,
        bin_counts=_bin_counts_sorted(sorted_values, edges),
        n=n,
        n_missing=n_missing,
        mean=mean,
        sd=float(np.std(sorted_values)),
        iqr=_quantile_linear(sorted_values, 0.75) - _quantile_linear(sorted_values, 0.25),
        minimum=float(sorted_values[0]),
        maximum=float(sorted_values[-1]),
    )


def _categorical_profile(name: str, series: pd.Series) -> CategoricalProfile:
    counts, n_missing = _value_counts(series)
    order = sorted(range(len(counts)), key=lambda i: category_key(counts.index[i]))
    categories = tuple(counts.index[i] for i in order)
    values = np.asarray([counts.iloc[i] for i in order], dtype=np.int64)
    return CategoricalProfile(
        name=name, categories=categories, counts=values, n=int(values.sum()), n_missing=n_missing
    )


def _check_feature_lists(numeric: Sequence[str], categorical: Sequence[str]) -> None:
    seen: set[str] = set()
    for column in [*numeric, *categorical]:
        if column in seen:
            raise InputError(ERR_DUPLICATE_FEATURE.format(column=column))
        seen.add(column)
    if not seen:
        raise InputError(ERR_NO_FEATURES)


# --------------------------------------------------------------------------- public
def build_reference_profile(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    n_bins: int = 10,
    n_threads: int | None = None,
) -> ReferenceProfile:
    """Profile the reference period once.

    Parameters
    ----------
    frame : pandas.DataFrame
        The reference period, one row per patient.
    numeric : sequence of str
        Numeric feature columns (any numeric dtype; missing values allowed).
    categorical : sequence of str
        Categorical feature columns (any dtype; missing values are counted separately).
    n_bins : int, default 10
        Number of reference-quantile bins per numeric feature (ties may give fewer).
    n_threads : int or None
        Threads for sorting the columns; None uses up to 4 (the CPU count).

    Returns
    -------
    ReferenceProfile

    Raises
    ------
    KeyError
        A listed column is not in ``frame`` (the message names it).
    TypeError
        A numeric column has a non-numeric dtype.
    ValueError
        Duplicate or no features, ``n_bins < 2``, infinite values.
    """
    frame = _check_frame(frame, "reference period")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise InputError(ERR_N_BINS.format(n_bins=n_bins))
    numeric, categorical = list(numeric), list(categorical)
    _check_feature_lists(numeric, categorical)
    _check_columns(frame, [*numeric, *categorical], "reference period")
    numeric_profiles = _map_threads(
        lambda name: _numeric_profile(name, _numeric_values(frame, name, "reference period"), int(n_bins)),
        numeric,
        n_threads,
    )
    return ReferenceProfile(
        n_rows=len(frame),
        n_bins=int(n_bins),
        numeric={p.name: p for p in numeric_profiles},
        categorical={name: _categorical_profile(name, frame[name]) for name in categorical},
    )


def _summarise_numeric_sorted(
    profile: NumericProfile, support: np.ndarray, n_missing: int, counts: np.ndarray | None = None
) -> NumericPeriodSummary:
    return NumericPeriodSummary(
        bin_counts=_bin_counts_sorted(support, profile.bin_edges, counts),
        n=int(support.size if counts is None else counts.sum()),
        n_missing=int(n_missing),
        total=float(support.sum() if counts is None else (support * counts).sum()),
    )


def _summarise_categorical(profile: CategoricalProfile, series: pd.Series) -> CategoricalPeriodSummary:
    counts, n_missing = _value_counts(series)
    # Keyed by value: equal values are the same category whatever their dtype (1 == 1.0).
    position = {c: i for i, c in enumerate(profile.categories)}
    aligned = np.zeros(len(profile.categories), dtype=np.int64)
    unseen: dict[Any, int] = {}
    for value, count in zip(counts.index, counts.to_numpy()):
        i = position.get(value)
        if i is None:
            unseen[value] = unseen.get(value, 0) + int(count)
        else:
            aligned[i] += int(count)
    return CategoricalPeriodSummary(
        counts=aligned, unseen=unseen, n=int(aligned.sum()) + sum(unseen.values()), n_missing=n_missing
    )


def summarise_period(
    frame: pd.DataFrame, profile: ReferenceProfile, *, n_threads: int | None = None
) -> PeriodSummary:
    """Count one production period on the reference bins and categories.

    Parameters
    ----------
    frame : pandas.DataFrame
        The production period; must contain every profiled feature.
    profile : ReferenceProfile
        From :func:`build_reference_profile`.
    n_threads : int or None
        Threads over numeric columns; None uses up to 4.

    Returns
    -------
    PeriodSummary
        Mergeable with :func:`merge_summaries`.
    """
    frame = _check_frame(frame, "production period")
    _check_columns(frame, profile.features, "production period")

    def numeric_summary(name: str) -> NumericPeriodSummary:
        sorted_values, n_missing = _sorted_non_missing(_numeric_values(frame, name, "production period"))
        return _summarise_numeric_sorted(profile.numeric[name], sorted_values, n_missing)

    numeric = _map_threads(numeric_summary, list(profile.numeric), n_threads)
    return PeriodSummary(
        n_rows=len(frame),
        numeric=dict(zip(profile.numeric, numeric)),
        categorical={
            name: _summarise_categorical(p, frame[name]) for name, p in profile.categorical.items()
        },
    )


def merge_summaries(a: PeriodSummary, b: PeriodSummary) -> PeriodSummary:
    """Add two period summaries made against the same profile.

    Merging is associative and commutative: the summary of a concatenation equals the
    merge of the summaries of its parts.

    Raises
    ------
    ValueError
        The summaries come from different profiles (features or bins differ).
    """
    if list(a.numeric) != list(b.numeric) or list(a.categorical) != list(b.categorical):
        raise InputError(ERR_MERGE_MISMATCH.format(detail="feature lists differ"))
    numeric = {}
    for name, x in a.numeric.items():
        y = b.numeric[name]
        if x.bin_counts.shape != y.bin_counts.shape:
            raise InputError(ERR_MERGE_MISMATCH.format(detail=f"bins of '{name}' differ"))
        numeric[name] = NumericPeriodSummary(
            bin_counts=x.bin_counts + y.bin_counts, n=x.n + y.n,
            n_missing=x.n_missing + y.n_missing, total=x.total + y.total,
        )
    categorical = {}
    for name, x in a.categorical.items():
        y = b.categorical[name]
        if x.counts.shape != y.counts.shape:
            raise InputError(ERR_MERGE_MISMATCH.format(detail=f"categories of '{name}' differ"))
        unseen = dict(x.unseen)
        for value, count in y.unseen.items():
            unseen[value] = unseen.get(value, 0) + count
        categorical[name] = CategoricalPeriodSummary(
            counts=x.counts + y.counts, unseen=unseen, n=x.n + y.n, n_missing=x.n_missing + y.n_missing
        )
    return PeriodSummary(n_rows=a.n_rows + b.n_rows, numeric=numeric, categorical=categorical)
