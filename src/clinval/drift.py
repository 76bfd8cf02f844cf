"""Two-sample drift statistics against a reference profile, with honest decisions.

Every production period is compared with the reference profile (computed once by
:func:`clinval.profile.build_reference_profile`), feature by feature:

============  =======================================  ====================================
kind          test (p-value)                           effect sizes
============  =======================================  ====================================
numeric       two-sample Kolmogorov-Smirnov (``ks``)   Wasserstein-1 / reference SD, PSI,
                                                       Jensen-Shannon on the reference bins
categorical   Pearson chi-square of homogeneity on     Jensen-Shannon distance, PSI
              the 2 x K table (``chi2``)
============  =======================================  ====================================

Decisions account for sample size: a feature is ``drifted`` when its p-value survives
Benjamini-Hochberg false discovery rate control across the tests of the period
(``q_value <= fdr_level``) **and** its effect size reaches every practical-significance
floor that is set (``psi_floor``, ``wasserstein_floor``, ``js_floor``; none by default).

Two more questions are tested per feature, in the same Benjamini-Hochberg family (so the
chance of any false alarm in a period with no change at all stays at ``fdr_level``):

* **missing rate** (``missing_p_value``, ``missing_q_value``, ``missing_drifted``): Fisher's
  exact test of the 2 x 2 table missing / present x reference / current. A feature with no
  missing value in either sample cannot reject and is left out of the family (Tarone
  1990). The distribution tests ignore missing values, so before this a column going from
  30% to 45% missing was never flagged.
* **new categories** (``new_level_p_value``, ``new_level_q_value``, ``new_level_drifted``;
  categorical features): conditional on each level's pooled count ``t``, the chance that
  all ``t`` values fall in the current sample (no reference value) is the hypergeometric
  ``pi = C(n, t) / C(n + m, t)``; with ``pi_min`` the smallest ``pi`` among the levels
  unseen in the reference, the p-value is the union bound ``sum(pi_j : pi_j <= pi_min)``
  over all levels. It is exact per level and valid however many rare levels the
  reference happened to miss (a raw count of unseen levels is not: under no drift it
  is positive in ~30% of periods at n = 100 when some levels are rare).
PSI is reported next to ``psi_critical``, the ``1 - fdr_level`` quantile of its
approximate null distribution at the actual sizes, ``chi2(B - 1) * (1/n + 1/m)``
(B occupied reference bins or categories, n and m the non-missing counts); it is
informative, the decision uses the p-value. A fixed rule such as "PSI > 0.1" fires on
most identical samples at n = 100: never use one alone.

Exact definitions
-----------------
* KS statistic and p-value are those of ``scipy.stats.ks_2samp`` (two-sided, method
  ``auto``): for samples up to 10,000 values scipy is called; above, the statistic comes
  from the sorted reference (kept as distinct values with counts when tied) by a
  blockwise merge (identical value, tested to 1e-12) and the p-value from
  ``scipy.stats.kstwo.sf(D, round(n m / (n + m)))``, scipy's own asymptotic branch
  (where scipy evaluates that in O(n), the same Birnbaum-Tingey sum is evaluated on a
  strided grid: relative difference below 1e-8, tested).
* Heavily tied values (at most 256 distinct values in the pooled sample, and fewer than
  half as many as values: integer labs, scores, rounded ages): scipy's p-value assumes no
  ties and is conservative there (0-2% rejections at a nominal 5%). The p-value is then
  the exact-conditional permutation p-value, by Monte Carlo on the sufficient statistics:
  2,000 tables with the pooled counts per distinct value, the current counts drawn from
  the multivariate hypergeometric distribution, ``(1 + #{D* >= D}) / 2001``; scipy's
  (conservative) p-value is kept when it is smaller than that resolution. The draws are
  seeded by the table itself, so the same data give the same p-value.
* ``wasserstein_norm`` = ``scipy.stats.wasserstein_distance`` / reference SD
  (population SD, ``ddof=0``, as evidently's ``wasserstein`` method). Undefined (NaN)
  for categorical features, which have no metric.
* PSI = sum over cells of ``(p_ref - p_cur) * ln(p_ref / p_cur)``. A cell empty in one
  sample gets half an observation (``0.5 / n``) there, so PSI stays finite, and is
  unchanged whenever every cell is occupied (then it equals evidently's on the same
  cells); cells empty in both samples are dropped. Numeric cells are the reference
  quantile bins of :mod:`clinval.profile` (evidently uses Sturges bins of the pooled data).
* Jensen-Shannon distance: ``scipy.spatial.distance.jensenshannon`` of the two
  proportion vectors, natural log (range 0 .. sqrt(ln 2) = 0.833).
* Categories unseen in the reference are pooled into one extra "unseen" cell with
  reference count 0: they enter chi-square, PSI (smoothed as above) and Jensen-Shannon,
  and are reported as ``unseen_categories`` (how many distinct values) and
  ``unseen_rate`` (their share of non-missing current values). They never crash.
* Missing values are excluded from the distribution tests, reported as
  ``missing_rate_reference`` / ``missing_rate_current`` (share of rows) and tested as
  above.

Bad input never crashes and never yields a silent NaN: a row whose statistics cannot be
computed has ``status = "insufficient data: <reason>"`` (fewer than ``min_n`` non-missing
values in a sample, no rows, a constant reference, a single reference category) and NaN
only in those cells; ``drifted`` is then False and its distribution test is left out of the
FDR family (its missing-rate test still counts: a column that became entirely missing is
flagged). The only NaN with ``status == "ok"`` is ``wasserstein_norm`` on a categorical
row. Wrong input (a missing column, a text column declared numeric) raises an error
naming the column.

Public API
----------
``DriftSettings(*, fdr_level=0.05, n_bins=10, min_n=30, psi_floor=None,
wasserstein_floor=None, js_floor=None)``
``compare_period(profile, current, *, settings=DriftSettings(), n_threads=None)``
    -> DataFrame, one row per feature, columns :data:`RESULT_COLUMNS`
``compare_periods(profile, periods, *, settings=DriftSettings(), n_threads=None)``
    -> long DataFrame with a leading ``period`` column
``prediction_drift(*, reference_scores, current_scores, settings=DriftSettings(),
name="predicted_risk")`` -> one-row DataFrame
``label_prevalence(y, *, confidence=0.95)`` -> :class:`LabelPrevalence` (Wilson CI)
``compare_label_prevalence(reference_labels, current_labels, *, confidence=0.95)``
    -> :class:`LabelPrevalenceShift` (Newcombe CI, Fisher exact p-value)
``segment_drift(reference, current, *, segment_columns, numeric, categorical,
settings=DriftSettings())`` -> long DataFrame, columns :data:`SEGMENT_COLUMNS`
``segment_ranking(segment_frame)`` -> DataFrame, one row per segment, most moved first
``population_stability_index(reference_counts, current_counts)`` -> float
``psi_critical_value(*, n_cells, n_reference, n_current, alpha)`` -> float
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from clinval.errors import InputError, MissingInputError
from clinval.intervals import difference_interval, rate_interval
from clinval.profile import (
    CategoricalPeriodSummary,
    CategoricalProfile,
    NumericPeriodSummary,
    NumericProfile,
    ReferenceProfile,
    _check_columns,
    _check_frame,
    _compress_ties,
    _map_threads,
    _numeric_values,
    _sorted_non_missing,
    _summarise_categorical,
    _summarise_numeric_sorted,
    build_reference_profile,
)
from clinval.vocabulary import STATUS_OK

__all__ = [
    "RESULT_COLUMNS",
    "SEGMENT_COLUMNS",
    "DriftSettings",
    "LabelPrevalence",
    "LabelPrevalenceShift",
    "compare_label_prevalence",
    "compare_period",
    "compare_periods",
    "label_prevalence",
    "missing_rate_test",
    "new_level_test",
    "population_stability_index",
    "prediction_drift",
    "psi_critical_value",
    "segment_drift",
    "segment_ranking",
]

INSUFFICIENT = "insufficient data: "

ERR_SETTING_RANGE = "DriftSettings.{name} must be {rule}, got {value!r}"
ERR_BINS_MISMATCH = (
    "the profile was built with n_bins={profile_bins} but settings.n_bins={settings_bins}; "
    "rebuild the profile with n_bins={settings_bins} or change the setting"
)
ERR_PERIODS_EMPTY = "no periods given: pass a mapping of period name to DataFrame"
ERR_LABEL_VALUES = "labels must be 0/1 or booleans; found {values} in {what}"
ERR_CONFIDENCE = "confidence must be strictly between 0 and 1, got {confidence!r}"
ERR_COUNTS = "counts must be non-negative, one-dimensional, of equal length and not all zero"
ERR_SEGMENT_COLUMN = "segment column '{column}' is not in the {what}"
ERR_NO_SEGMENT_COLUMNS = "no segment columns given"

REASON_NO_ROWS = "the current period has no rows"
REASON_FEW_CURRENT = "{n} non-missing current values of '{feature}' (min_n = {min_n})"
REASON_FEW_REFERENCE = "{n} non-missing reference values of '{feature}' (min_n = {min_n})"
REASON_CONSTANT = "reference values of '{feature}' are constant ({value}): no spread to compare against"
REASON_ONE_CATEGORY = "the reference has a single category of '{feature}' ({value!r}): nothing to compare"
REASON_NO_LABELS = "no non-missing labels"
REASON_SEGMENT_ABSENT = "segment {column} = {value!r} has {n} reference rows (min_n = {min_n})"

#: Columns of :func:`compare_period`, in order.
RESULT_COLUMNS = (
    "feature", "kind", "n_reference", "n_current", "test", "statistic", "p_value", "q_value",
    "wasserstein_norm", "js_distance", "psi", "psi_critical", "drifted",
    "missing_rate_reference", "missing_rate_current", "missing_p_value", "missing_q_value", "missing_drifted",
    "unseen_categories", "unseen_rate", "new_level_p_value", "new_level_q_value", "new_level_drifted", "status",
)

#: Columns of :func:`segment_drift`, in order.
SEGMENT_COLUMNS = (
    "segment_column", "segment", "feature", "kind", "n_reference", "n_current", "test",
    "statistic", "p_value", "q_value", "psi", "psi_critical", "psi_excess", "js_distance",
    "wasserstein_norm", "drifted", "moved_most", "status",
)

_STATISTIC_CELLS = ("statistic", "p_value", "wasserstein_norm", "js_distance", "psi", "psi_critical")

# Above this many values in either sample scipy's ks_2samp switches to its asymptotic
# p-value; below it we call scipy directly (exact p-value, cheap at that size).
_KS_EXACT_MAX_N = 10_000
# Values per sample in one block of the merge: cache-sized, temporaries ~4 MB per thread.
_MERGE_BLOCK = 1 << 15
# Tie-aware KS: at most this many distinct pooled values (and fewer than half the values);
# Monte Carlo tables per test (p-value resolution 1/2001; a few ms to ~40 ms per test).
_KS_DISCRETE_MAX_VALUES = 256
_KS_PERMUTATIONS = 2_000


@dataclass(frozen=True, kw_only=True)
class DriftSettings:
    """Settings of the drift decisions; ``params/drift.yaml`` uses these key names."""

    fdr_level: float = 0.05
    """False discovery rate controlled across the features of a period (Benjamini-Hochberg); also the alpha of psi_critical."""
    n_bins: int = 10
    """Reference-quantile bins per numeric feature for PSI and Jensen-Shannon (ties may give fewer)."""
    min_n: int = 30
    """Fewest non-missing values in each sample for a feature to be tested; below it the row says "insufficient data"."""
    psi_floor: float | None = None
    """Practical-significance floor: drifted also needs PSI >= this (None = no floor; 0.1 is the folklore value)."""
    wasserstein_floor: float | None = None
    """Practical-significance floor for numeric features: Wasserstein distance in reference SDs (None = no floor)."""
    js_floor: float | None = None
    """Practical-significance floor: Jensen-Shannon distance, natural log, 0..0.833 (None = no floor)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.fdr_level, (int, float)) and 0 < self.fdr_level < 1):
            raise InputError(ERR_SETTING_RANGE.format(name="fdr_level", rule="in (0, 1)", value=self.fdr_level))
        for name, low in (("n_bins", 2), ("min_n", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(ERR_SETTING_RANGE.format(name=name, rule=f"an integer >= {low}", value=value))
        for name in ("psi_floor", "wasserstein_floor", "js_floor"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
                raise InputError(ERR_SETTING_RANGE.format(name=name, rule="None or a number >= 0", value=value))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The setting names, as used in ``params/drift.yaml``."""
        return tuple(f.name for f in fields(cls))


# --------------------------------------------------------------------------- low level
def population_stability_index(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """PSI of two count vectors on the same cells.

    Parameters
    ----------
    reference_counts, current_counts : sequence of float
        Counts per cell (bin or category), same order.

    Returns
    -------
    float
        ``sum((p_ref - p_cur) * ln(p_ref / p_cur))`` (dimensionless, >= 0). A cell empty
        in one sample counts as half an observation there; cells empty in both are dropped.
    """
    r = np.asarray(reference_counts, dtype=np.float64)
    c = np.asarray(current_counts, dtype=np.float64)
    if r.ndim != 1 or r.shape != c.shape or (r < 0).any() or (c < 0).any() or r.sum() == 0 or c.sum() == 0:
        raise ValueError(ERR_COUNTS)
    keep = (r > 0) | (c > 0)
    r, c = r[keep], c[keep]
    m, n = r.sum(), c.sum()
    p_ref = np.where(r > 0, r / m, 0.5 / m)
    p_cur = np.where(c > 0, c / n, 0.5 / n)
    return float(np.sum((p_ref - p_cur) * np.log(p_ref / p_cur)))


def psi_critical_value(*, n_cells: int, n_reference: int, n_current: int, alpha: float) -> float:
    """Critical value of PSI under no drift at the actual sample sizes.

    Uses the asymptotic null distribution ``PSI ~ chi2(n_cells - 1) * (1/n + 1/m)``
    (PSI is a symmetrised KL divergence, locally the Pearson divergence of the two
    proportion vectors). Accurate when every cell expects about 5 or more values;
    validated by simulation in ``tests/test_drift_statistics.py``.

    Parameters
    ----------
    n_cells : int
        Cells with positive reference probability (bins or categories).
    n_reference, n_current : int
        Non-missing values in each sample.
    alpha : float
        Level: the ``1 - alpha`` quantile is returned.
    """
    if n_cells < 2:
        return float("nan")
    scale = 1.0 / n_reference + 1.0 / n_current
    return float(stats.chi2.ppf(1.0 - alpha, n_cells - 1) * scale)


def _ks_wasserstein_sorted(
    reference: np.ndarray,
    current: np.ndarray,
    reference_counts: np.ndarray | None = None,
    current_counts: np.ndarray | None = None,
) -> tuple[float, float]:
    """Exact KS statistic and Wasserstein-1 distance of two sorted samples.

    Each sample is its sorted values, or its distinct sorted values with counts
    (``*_counts``). Blockwise merge: O(n + m) time; temporaries live in a few reused
    cache-sized buffers (fresh large arrays cost a page fault per 4 kB). Values equal
    scipy's ``ks_2samp(...).statistic`` and ``wasserstein_distance``: the same ECDF
    differences (count / size), summed in a different order for W1.
    """
    weighted = reference_counts is not None or current_counts is not None
    m = int(reference.size if reference_counts is None else reference_counts.sum())
    n = int(current.size if current_counts is None else current_counts.sum())
    p, q = reference.size, current.size
    splits = np.unique(np.concatenate((reference[_MERGE_BLOCK::_MERGE_BLOCK], current[_MERGE_BLOCK::_MERGE_BLOCK])))
    r_cuts = np.concatenate(([0], np.searchsorted(reference, splits, side="left"), [p]))
    c_cuts = np.concatenate(([0], np.searchsorted(current, splits, side="left"), [q]))
    size = int(max(np.diff(r_cuts).max() + np.diff(c_cuts).max(), 1))
    both = np.empty(size)
    values = np.empty(size)
    diff = np.empty(size)
    work = np.empty(size)
    cum_c = np.empty(size, dtype=np.int64)
    cum_r = np.empty(size, dtype=np.int64)
    flags = np.empty(size, dtype=bool)
    counter = np.arange(1, size + 1, dtype=np.int64)
    weights = np.empty(size, dtype=np.int64) if weighted else None
    d_max, w1 = 0.0, 0.0
    prev_value, prev_diff = None, 0.0
    r_offset = c_offset = 0  # values of each sample in earlier blocks
    for k in range(r_cuts.size - 1):
        r_lo, r_hi, c_lo, c_hi = int(r_cuts[k]), int(r_cuts[k + 1]), int(c_cuts[k]), int(c_cuts[k + 1])
        nr, size_k = r_hi - r_lo, (r_hi - r_lo) + (c_hi - c_lo)
        if size_k == 0:
            continue
        b, v, dd, wk = both[:size_k], values[:size_k], diff[:size_k], work[:size_k]
        cc, cr, fl = cum_c[:size_k], cum_r[:size_k], flags[:size_k]
        b[:nr] = reference[r_lo:r_hi]
        b[nr:] = current[c_lo:c_hi]
        order = np.argsort(b, kind="stable")  # two sorted runs: a linear merge
        np.take(b, order, out=v, mode="clip")  # "clip" skips a bounds-checked copy
        if weights is None:
            np.greater_equal(order, nr, out=fl)
            np.cumsum(fl, out=cc)
            np.subtract(counter[:size_k], cc, out=cr)
            r_block, c_block = nr, size_k - nr
        else:
            wt = weights[:size_k]
            wt[:nr] = 1 if reference_counts is None else reference_counts[r_lo:r_hi]
            wt[nr:] = 0
            np.take(wt, order, out=cr, mode="clip")
            np.cumsum(cr, out=cr)
            wt[:nr] = 0
            wt[nr:] = 1 if current_counts is None else current_counts[c_lo:c_hi]
            np.take(wt, order, out=cc, mode="clip")
            np.cumsum(cc, out=cc)
            r_block, c_block = int(cr[-1]), int(cc[-1])
        del order
        cc += c_offset
        cr += r_offset
        r_offset += r_block
        c_offset += c_block
        np.divide(cr, m, out=dd)
        np.divide(cc, n, out=wk)
        dd -= wk  # ECDF difference just after each value, as scipy computes it
        if prev_value is not None:  # the gap between this block and the previous one
            w1 += abs(prev_diff) * (float(v[0]) - prev_value)
        np.not_equal(v[:-1], v[1:], out=fl[:-1])
        fl[-1] = True  # blocks are split between distinct values
        np.multiply(dd, fl, out=wk)  # keep only the last of tied values
        d_max = max(d_max, float(wk.max()), float(-wk.min()))
        np.abs(dd, out=wk)
        np.subtract(v[1:], v[:-1], out=b[:-1])
        np.multiply(wk[:-1], b[:-1], out=wk[:-1])  # not np.dot: BLAS threads cost ms per call here
        w1 += float(wk[:-1].sum())
        prev_value, prev_diff = float(v[-1]), float(dd[-1])
    return d_max, w1


def _smirnov_sf_strided(n: int, d: float, points: int = 20_000) -> float:
    """One-sided Smirnov P(D+_n >= d) for large n, fast.

    The Birnbaum-Tingey sum that ``scipy.special.smirnov`` evaluates term by term (O(n),
    ~1 s at n = 5e5) has smooth, positive terms spread over ~n indices, so summing every
    ``s``-th term times ``s`` (trapezoid rule on a smooth, vanishing integrand) gives the
    same value; measured relative error <= 2e-9 against scipy for n in 1e4..1e6
    (``tests/test_drift_statistics.py`` checks 1e-8).
    """
    j_max = int(np.floor(n * (1.0 - d)))
    stride = max(1, j_max // points)
    j = np.arange(0, j_max + 1, stride, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_terms = (
            special.gammaln(n + 1.0) - special.gammaln(j + 1.0) - special.gammaln(n - j + 1.0)
            + (n - j) * np.log1p(-d - j / n) + (j - 1.0) * np.log(d + j / n)
        )
    peak = float(log_terms.max())
    return float(d * math.exp(peak) * np.exp(log_terms - peak).sum() * stride)


def _kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``, with its slow exact branch replaced for large n.

    For n > 10,000 and 2.2 <= n d^2 < 370 scipy returns ``2 * smirnov(n, d)`` computed in
    O(n) (about 1 s per feature at a million rows); we return the same quantity from
    :func:`_smirnov_sf_strided`. Elsewhere scipy is called unchanged.
    """
    z2 = n * d * d
    if n <= _KS_EXACT_MAX_N or z2 < 2.2 or z2 >= 370.0:
        return float(stats.kstwo.sf(d, n))
    return float(np.clip(2.0 * _smirnov_sf_strided(n, d), 0.0, 1.0))


def _pooled_counts(
    reference: np.ndarray, reference_counts: np.ndarray | None, current: np.ndarray, current_counts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each sample on the pooled distinct values (ascending)."""
    values = np.union1d(reference, current)
    r = np.zeros(values.size, dtype=np.int64)
    c = np.zeros(values.size, dtype=np.int64)
    np.add.at(r, np.searchsorted(values, reference), 1 if reference_counts is None else reference_counts)
    np.add.at(c, np.searchsorted(values, current), 1 if current_counts is None else current_counts)
    return r, c


def _ks_discrete_pvalue(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Exact-conditional (permutation) KS p-value for tied data, by Monte Carlo.

    Under no drift the current sample is a random subset of the pooled values, so its
    counts per distinct value are multivariate hypergeometric given the pooled counts.
    """
    keep = (reference_counts + current_counts) > 0  # values neither sample holds change nothing, not even the seed
    reference_counts, current_counts = reference_counts[keep], current_counts[keep]
    m, n = int(reference_counts.sum()), int(current_counts.sum())
    pooled = reference_counts + current_counts
    seed = zlib.crc32(np.concatenate((reference_counts, current_counts)).astype(np.int64).tobytes())
    # numpy's "count" method costs ~ the pooled size per table, "marginals" ~ the distinct values
    method = "count" if pooled.sum() < 60 * pooled.size else "marginals"
    draws = np.random.default_rng(seed).multivariate_hypergeometric(pooled, n, size=_KS_PERMUTATIONS, method=method)
    cum_pooled = np.cumsum(pooled)
    cum_draws = np.cumsum(draws, axis=1)
    d_null = np.abs((cum_pooled - cum_draws) / m - cum_draws / n).max(axis=1)
    d = np.abs(np.cumsum(reference_counts) / m - np.cumsum(current_counts) / n).max()
    return float((1 + np.count_nonzero(d_null >= d - 1e-12)) / (_KS_PERMUTATIONS + 1))


def missing_rate_test(*, reference_missing: int, reference_rows: int, current_missing: int, current_rows: int) -> float:
    """Two-sided Fisher exact p-value for a change in the share of missing values.

    Returns NaN when the test cannot reject (no missing value in either sample, or an
    empty sample), so it is left out of the FDR family.
    """
    if reference_rows == 0 or current_rows == 0 or reference_missing + current_missing == 0:
        return float("nan")
    table = [[reference_missing, reference_rows - reference_missing], [current_missing, current_rows - current_missing]]
    return float(stats.fisher_exact(table).pvalue)


def new_level_test(*, reference_counts: Sequence[int], current_counts: Sequence[int], unseen_counts: Sequence[int]) -> float:
    """P-value for categories that appear in the current period but not in the reference.

    Parameters
    ----------
    reference_counts, current_counts : sequence of int
        Counts of the reference categories in each sample (aligned).
    unseen_counts : sequence of int
        Current counts of each category absent from the reference.

    Returns
    -------
    float
        ``min(1, sum(pi_j : pi_j <= pi_min))`` with ``pi_j = C(n, t_j) / C(n + m, t_j)``
        the hypergeometric chance that all ``t_j`` pooled values of level ``j`` fall in the
        current sample, and ``pi_min`` the smallest ``pi`` among the unseen levels; 1.0
        when there is none.
    """
    r = np.asarray(reference_counts, dtype=np.int64)
    c = np.asarray(current_counts, dtype=np.int64)
    u = np.asarray([k for k in unseen_counts if k > 0], dtype=np.int64)
    if u.size == 0:
        return 1.0
    m, n = int(r.sum()), int(c.sum() + u.sum())
    total = np.concatenate((r + c, u)).astype(np.float64)
    total = total[total > 0]
    big = float(n + m)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pi = np.where(
            total <= n,
            special.gammaln(n + 1.0) - special.gammaln(n - total + 1.0)
            - special.gammaln(big + 1.0) + special.gammaln(big - total + 1.0),
            -np.inf,
        )
    observed = log_pi[total.size - u.size:].min()  # the unseen levels come last
    return float(min(1.0, np.exp(log_pi[log_pi <= observed + 1e-12]).sum()))


def _ks_test(
    reference: np.ndarray, reference_counts: np.ndarray | None, current: np.ndarray, current_counts: np.ndarray | None
) -> tuple[float, float, float]:
    """KS statistic, p-value and Wasserstein-1 distance of two sorted samples (with counts)."""
    m = int(reference.size if reference_counts is None else reference_counts.sum())
    n = int(current.size if current_counts is None else current_counts.sum())
    d, w1 = _ks_wasserstein_sorted(reference, current, reference_counts, current_counts)
    if max(m, n) <= _KS_EXACT_MAX_N:
        result = stats.ks_2samp(
            reference if reference_counts is None else np.repeat(reference, reference_counts),
            current if current_counts is None else np.repeat(current, current_counts),
        )
        d, p = float(result.statistic), float(result.pvalue)
    else:
        en = float(m) * float(n) / (float(m) + float(n))
        p = float(np.clip(_kstwo_sf(d, int(np.round(en))), 0.0, 1.0))
    # heavily tied: the reference is stored as distinct values (at most half as many as values)
    # and the current sample is too, or small; checked in that order so continuous columns cost nothing
    tied = reference_counts is not None and (current_counts is not None or current.size <= _KS_EXACT_MAX_N)
    if tied and p >= 1.0 / (_KS_PERMUTATIONS + 1):
        distinct = np.union1d(reference, current).size
        if distinct <= _KS_DISCRETE_MAX_VALUES and 2 * distinct < m + n:
            p = _ks_discrete_pvalue(*_pooled_counts(reference, reference_counts, current, current_counts))
    return d, p, w1


def _binned_effects(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """PSI and Jensen-Shannon distance of two count vectors."""
    keep = (reference_counts > 0) | (current_counts > 0)
    r, c = reference_counts[keep], current_counts[keep]
    js = float(jensenshannon(r / r.sum(), c / c.sum()))
    return population_stability_index(r, c), max(js, 0.0)


# --------------------------------------------------------------------------- rows
def _rate(count: int, total: int) -> float:
    return count / total if total > 0 else float("nan")


def _empty_row(feature: str, kind: str, test: str) -> dict[str, Any]:
    nan = float("nan")
    return {
        "feature": feature, "kind": kind, "n_reference": 0, "n_current": 0, "test": test,
        "statistic": nan, "p_value": nan, "q_value": nan, "wasserstein_norm": nan,
        "js_distance": nan, "psi": nan, "psi_critical": nan, "drifted": False,
        "missing_rate_reference": nan, "missing_rate_current": nan,
        "missing_p_value": nan, "missing_q_value": nan, "missing_drifted": False,
        "unseen_categories": 0, "unseen_rate": 0.0,
        "new_level_p_value": nan, "new_level_q_value": nan, "new_level_drifted": False, "status": STATUS_OK,
        "_n_cells": np.nan,  # occupied reference cells B; internal, for the PSI null mean
    }


def _size_reasons(feature: str, n_rows: int, n_reference: int, n_current: int, min_n: int) -> list[str]:
    reasons = []
    if n_rows == 0:
        reasons.append(REASON_NO_ROWS)
    elif n_current < min_n:
        reasons.append(REASON_FEW_CURRENT.format(n=n_current, feature=feature, min_n=min_n))
    if n_reference < min_n:
        reasons.append(REASON_FEW_REFERENCE.format(n=n_reference, feature=feature, min_n=min_n))
    return reasons


def _sizes_and_missing(profile: NumericProfile | CategoricalProfile, summary: NumericPeriodSummary | CategoricalPeriodSummary,
                       n_rows: int) -> dict[str, Any]:
    """Sample sizes, missing rates and the missing-rate test of one feature (numeric or categorical)."""
    reference_rows = profile.n + profile.n_missing
    return {
        "n_reference": profile.n, "n_current": summary.n,
        "missing_rate_reference": _rate(profile.n_missing, reference_rows),
        "missing_rate_current": _rate(summary.n_missing, n_rows),
        "missing_p_value": missing_rate_test(reference_missing=profile.n_missing, reference_rows=reference_rows,
                                             current_missing=summary.n_missing, current_rows=n_rows),
    }


def _numeric_row(
    profile: NumericProfile, current: tuple[np.ndarray, np.ndarray | None], summary: NumericPeriodSummary,
    n_rows: int, settings: DriftSettings,
) -> dict[str, Any]:
    row = _empty_row(profile.name, "numeric", "ks")
    row.update(
        **_sizes_and_missing(profile, summary, n_rows),
    )
    reasons = _size_reasons(profile.name, n_rows, profile.n, summary.n, settings.min_n)
    if not reasons and profile.is_constant:
        reasons.append(REASON_CONSTANT.format(feature=profile.name, value=f"{profile.minimum:g}"))
    if reasons:
        row["status"] = INSUFFICIENT + "; ".join(reasons)
        return row
    d, p, w1 = _ks_test(profile.support, profile.support_counts, *current)
    psi, js = _binned_effects(profile.bin_counts, summary.bin_counts)
    row.update(
        _n_cells=profile.bin_counts.size,
        statistic=d, p_value=p, wasserstein_norm=w1 / profile.sd, psi=psi, js_distance=js,
        psi_critical=psi_critical_value(
            n_cells=profile.bin_counts.size, n_reference=profile.n, n_current=summary.n,
            alpha=settings.fdr_level,
        ),
    )
    return row


def _categorical_row(
    profile: CategoricalProfile, summary: CategoricalPeriodSummary, n_rows: int, settings: DriftSettings
) -> dict[str, Any]:
    row = _empty_row(profile.name, "categorical", "chi2")
    n_unseen = summary.n_unseen
    row.update(
        **_sizes_and_missing(profile, summary, n_rows),
        unseen_categories=len(summary.unseen),
        unseen_rate=_rate(n_unseen, summary.n) if summary.n > 0 else 0.0,
    )
    reasons = _size_reasons(profile.name, n_rows, profile.n, summary.n, settings.min_n)
    if not reasons and len(profile.categories) < 2:
        reasons.append(REASON_ONE_CATEGORY.format(feature=profile.name, value=profile.categories[0]))
    if reasons:
        row["status"] = INSUFFICIENT + "; ".join(reasons)
        return row
    reference_counts = np.append(profile.counts, 0)
    current_counts = np.append(summary.counts, n_unseen)
    keep = (reference_counts + current_counts) > 0
    table = np.vstack((reference_counts[keep], current_counts[keep]))
    chi2 = stats.chi2_contingency(table, correction=False)
    psi, js = _binned_effects(reference_counts, current_counts)
    row.update(
        _n_cells=len(profile.categories),
        statistic=float(chi2.statistic), p_value=float(chi2.pvalue), psi=psi, js_distance=js,
        new_level_p_value=new_level_test(reference_counts=profile.counts, current_counts=summary.counts,
                                         unseen_counts=list(summary.unseen.values())),
        psi_critical=psi_critical_value(
            n_cells=len(profile.categories), n_reference=profile.n, n_current=summary.n,
            alpha=settings.fdr_level,
        ),
    )
    return row


_FAMILY = (("p_value", "q_value"), ("missing_p_value", "missing_q_value"), ("new_level_p_value", "new_level_q_value"))


def _decide(frame: pd.DataFrame, settings: DriftSettings) -> pd.DataFrame:
    """Benjamini-Hochberg q-values over every test of the period (distribution, missing
    rate, new categories) as one family, then the practical-significance floors."""
    tested = frame["status"].eq(STATUS_OK).to_numpy()
    p_columns = [frame["p_value"].where(tested).to_numpy(dtype=float),
                 frame["missing_p_value"].to_numpy(dtype=float),
                 frame["new_level_p_value"].where(tested).to_numpy(dtype=float)]
    pooled = np.concatenate(p_columns)
    in_family = ~np.isnan(pooled)
    q = np.full(pooled.size, np.nan)
    if in_family.any():
        q[in_family] = stats.false_discovery_control(pooled[in_family], method="bh")
    for (_, q_name), part in zip(_FAMILY, np.split(q, len(_FAMILY))):
        frame[q_name] = part
    drifted = tested & (np.nan_to_num(frame["q_value"].to_numpy(dtype=float), nan=1.0) <= settings.fdr_level)
    if settings.psi_floor is not None:
        drifted &= frame["psi"].fillna(-np.inf).to_numpy() >= settings.psi_floor
    if settings.js_floor is not None:
        drifted &= frame["js_distance"].fillna(-np.inf).to_numpy() >= settings.js_floor
    if settings.wasserstein_floor is not None:
        numeric = frame["kind"].eq("numeric").to_numpy()
        reaches = frame["wasserstein_norm"].fillna(-np.inf).to_numpy() >= settings.wasserstein_floor
        drifted &= ~numeric | reaches
    frame["drifted"] = drifted
    frame["missing_drifted"] = np.nan_to_num(frame["missing_q_value"].to_numpy(dtype=float), nan=1.0) <= settings.fdr_level
    frame["new_level_drifted"] = np.nan_to_num(frame["new_level_q_value"].to_numpy(dtype=float), nan=1.0) <= settings.fdr_level
    return frame


def _compare_rows(
    profile: ReferenceProfile, current: pd.DataFrame, settings: DriftSettings, n_threads: int | None
) -> list[dict[str, Any]]:
    current = _check_frame(current, "production period")
    _check_columns(current, profile.features, "production period")
    if settings.n_bins != profile.n_bins:
        raise InputError(ERR_BINS_MISMATCH.format(profile_bins=profile.n_bins, settings_bins=settings.n_bins))
    n_rows = len(current)

    def numeric_row(name: str) -> dict[str, Any]:
        column_profile = profile.numeric[name]
        current_sorted, n_missing = _sorted_non_missing(_numeric_values(current, name, "production period"))
        summary = _summarise_numeric_sorted(column_profile, current_sorted, n_missing)
        return _numeric_row(column_profile, _compress_ties(current_sorted), summary, n_rows, settings)

    rows = _map_threads(numeric_row, list(profile.numeric), n_threads)
    for name, column_profile in profile.categorical.items():
        summary = _summarise_categorical(column_profile, current[name])
        rows.append(_categorical_row(column_profile, summary, n_rows, settings))
    return rows


def compare_period(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    settings: DriftSettings = DriftSettings(),
    n_threads: int | None = None,
) -> pd.DataFrame:
    """Compare one production period with the reference profile.

    Parameters
    ----------
    profile : ReferenceProfile
        From :func:`clinval.profile.build_reference_profile`, with the same ``n_bins``
        as ``settings``.
    current : pandas.DataFrame
        The production period; must contain every profiled feature.
    settings : DriftSettings
        Decision settings.
    n_threads : int or None
        Threads over numeric columns (numpy releases the GIL while sorting); None uses
        up to 4.

    Returns
    -------
    pandas.DataFrame
        One row per feature (numeric first, in profile order), columns
        :data:`RESULT_COLUMNS`. ``statistic`` is the KS D (numeric) or the chi-square
        statistic (categorical); ``q_value`` is the BH-adjusted p-value across the
        tested features of this period; rates are fractions in [0, 1].
    """
    frame = pd.DataFrame(_compare_rows(profile, current, settings, n_threads), columns=list(RESULT_COLUMNS))
    return _decide(frame, settings)


def compare_periods(
    profile: ReferenceProfile,
    periods: Mapping[str, pd.DataFrame],
    *,
    settings: DriftSettings = DriftSettings(),
    n_threads: int | None = None,
) -> pd.DataFrame:
    """Compare several production periods with one reference profile.

    Returns
    -------
    pandas.DataFrame
        Long format: a leading ``period`` column then :data:`RESULT_COLUMNS`; the FDR is
        controlled within each period (each period is its own decision).
    """
    if not periods:
        raise InputError(ERR_PERIODS_EMPTY)
    frames = []
    for name, period in periods.items():
        result = compare_period(profile, period, settings=settings, n_threads=n_threads)
        result.insert(0, "period", name)
        frames.append(result)
    return pd.concat(frames, ignore_index=True)


def prediction_drift(
    *,
    reference_scores: Sequence[float] | np.ndarray | pd.Series,
    current_scores: Sequence[float] | np.ndarray | pd.Series,
    settings: DriftSettings = DriftSettings(),
    name: str = "predicted_risk",
) -> pd.DataFrame:
    """Drift of the predicted-risk distribution (KS, Wasserstein, PSI, JS).

    Parameters
    ----------
    reference_scores, current_scores : array-like of float
        Predicted risks (probabilities) of the reference and the production period.
    settings : DriftSettings
    name : str
        Feature name in the result.

    Returns
    -------
    pandas.DataFrame
        One row, columns :data:`RESULT_COLUMNS` (``q_value == p_value``: one test).
    """
    reference = pd.DataFrame({name: np.asarray(reference_scores, dtype=np.float64)})
    current = pd.DataFrame({name: np.asarray(current_scores, dtype=np.float64)})
    profile = build_reference_profile(reference, numeric=[name], categorical=[], n_bins=settings.n_bins)
    return compare_period(profile, current, settings=settings, n_threads=1)


# --------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class LabelPrevalence:
    """Share of positive labels with a Wilson score confidence interval.

    Attributes
    ----------
    n : int
        Non-missing labels.
    n_positive : int
        Labels equal to 1 (True).
    n_missing : int
        Missing labels (excluded).
    prevalence, ci_low, ci_high : float
        Fractions in [0, 1]; NaN only when ``status`` says insufficient data.
    confidence : float
        Two-sided confidence level of the interval.
    method : str
        ``"wilson"``.
    status : str
        ``"ok"`` or ``"insufficient data: <reason>"``.
    """

    n: int
    n_positive: int
    n_missing: int
    prevalence: float
    ci_low: float
    ci_high: float
    confidence: float
    method: str
    status: str


@dataclass(frozen=True)
class LabelPrevalenceShift:
    """Change of label prevalence from the reference to a production period.

    Attributes
    ----------
    reference, current : LabelPrevalence
    difference : float
        ``current.prevalence - reference.prevalence`` (fraction).
    ci_low, ci_high : float
        Newcombe hybrid-score interval of the difference (method 10).
    p_value : float
        Two-sided Fisher exact test of equal prevalence.
    status : str
        ``"ok"`` or ``"insufficient data: <reason>"``.
    """

    reference: LabelPrevalence
    current: LabelPrevalence
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    status: str


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise InputError(ERR_CONFIDENCE.format(confidence=confidence))


def _binary_labels(y: Any, what: str) -> tuple[np.ndarray, int]:
    series = pd.Series(np.asarray(y) if not isinstance(y, pd.Series) else y)
    missing = series.isna()
    kept = series[~missing]
    values = set(pd.unique(kept.to_numpy()).tolist())
    if not values <= {0, 1}:  # True == 1 and False == 0 in Python
        shown = ", ".join(repr(v) for v in sorted(values - {0, 1}, key=str)[:5])
        raise InputError(ERR_LABEL_VALUES.format(values=shown, what=what))
    return kept.to_numpy().astype(np.int64), int(missing.sum())


def label_prevalence(y: Any, *, confidence: float = 0.95) -> LabelPrevalence:
    """Label prevalence with a Wilson score interval.

    Parameters
    ----------
    y : array-like of {0, 1} or bool
        Observed outcomes; missing values are excluded and counted. One class only is
        fine (the Wilson interval stays informative at 0 or 1).
    confidence : float, default 0.95
        Two-sided confidence level.

    Returns
    -------
    LabelPrevalence
    """
    _check_confidence(confidence)
    labels, n_missing = _binary_labels(y, "the labels")
    n, k = int(labels.size), int(labels.sum())
    if n == 0:
        nan = float("nan")
        return LabelPrevalence(n, k, n_missing, nan, nan, nan, confidence, "wilson", INSUFFICIENT + REASON_NO_LABELS)
    low, high = rate_interval(k, n, confidence=confidence)
    return LabelPrevalence(n, k, n_missing, k / n, low, high, confidence, "wilson", STATUS_OK)


def compare_label_prevalence(reference_labels: Any, current_labels: Any, *, confidence: float = 0.95) -> LabelPrevalenceShift:
    """Prevalence shift between the reference and a production period.

    Returns
    -------
    LabelPrevalenceShift
        Difference (current minus reference) with Newcombe's hybrid score interval and
        a two-sided Fisher exact p-value.
    """
    reference = label_prevalence(reference_labels, confidence=confidence)
    current = label_prevalence(current_labels, confidence=confidence)
    if reference.status != STATUS_OK or current.status != STATUS_OK:
        which = "reference" if reference.status != STATUS_OK else "current period"
        nan = float("nan")
        return LabelPrevalenceShift(reference, current, nan, nan, nan, nan, INSUFFICIENT + f"{REASON_NO_LABELS} in the {which}")
    difference = current.prevalence - reference.prevalence
    low, high = difference_interval((current.prevalence, current.ci_low, current.ci_high),
                                    (reference.prevalence, reference.ci_low, reference.ci_high))
    table = [[reference.n_positive, reference.n - reference.n_positive], [current.n_positive, current.n - current.n_positive]]
    p_value = float(stats.fisher_exact(table).pvalue)
    return LabelPrevalenceShift(reference, current, difference, low, high, p_value, STATUS_OK)


# --------------------------------------------------------------------------- segments
def _segment_values(reference: pd.Series, current: pd.Series) -> list[Any]:
    values = pd.unique(pd.concat([reference.dropna(), current.dropna()], ignore_index=True).to_numpy())
    return sorted(values.tolist(), key=lambda v: (str(type(v).__name__), str(v)))


def segment_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    segment_columns: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    settings: DriftSettings = DriftSettings(),
) -> pd.DataFrame:
    """Which segment (sex, age band, site, ...) moved, feature by feature.

    For each segment column and each of its values, the reference rows of that segment
    are profiled and compared with the current rows of the same segment. A segment
    column is not compared with itself. Rows whose segment value is missing are left
    out. FDR (Benjamini-Hochberg) is controlled across all features x segments of one
    segment column.

    Parameters
    ----------
    reference, current : pandas.DataFrame
        Reference and production period, with the segment and feature columns.
    segment_columns : sequence of str
        Columns defining the segments (categorical; band numeric ones first).
    numeric, categorical : sequence of str
        Features to compare, as in :func:`clinval.profile.build_reference_profile`.
    settings : DriftSettings

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SEGMENT_COLUMNS`. ``psi_excess`` is PSI minus its null mean
        ``(B - 1) * (1/n + 1/m)``, so segments of different sizes are comparable (small
        segments have larger PSI by chance). ``moved_most`` is True on the one row per
        segment column with the largest ``psi_excess`` among tested rows: the segment
        and feature a reviewer should look at first.
    """
    reference = _check_frame(reference, "reference period")
    current = _check_frame(current, "production period")
    if not segment_columns:
        raise InputError(ERR_NO_SEGMENT_COLUMNS)
    for column in segment_columns:
        for frame, what in ((reference, "reference period"), (current, "production period")):
            if column not in frame.columns:
                raise MissingInputError(ERR_SEGMENT_COLUMN.format(column=column, what=what))
    _check_columns(reference, [*numeric, *categorical], "reference period")
    _check_columns(current, [*numeric, *categorical], "production period")
    parts = []
    for column in segment_columns:
        seg_numeric = [f for f in numeric if f != column]
        seg_categorical = [f for f in categorical if f != column]
        rows: list[dict[str, Any]] = []
        for value in _segment_values(reference[column], current[column]):
            ref_part = reference.loc[reference[column] == value]
            cur_part = current.loc[current[column] == value]
            if len(ref_part) < settings.min_n:
                reason = INSUFFICIENT + REASON_SEGMENT_ABSENT.format(
                    column=column, value=value, n=len(ref_part), min_n=settings.min_n
                )
                for feature, kind in [*((f, "numeric") for f in seg_numeric), *((f, "categorical") for f in seg_categorical)]:
                    row = _empty_row(feature, kind, "ks" if kind == "numeric" else "chi2")
                    row.update(n_current=int(cur_part[feature].notna().sum()), status=reason)
                    rows.append({"segment_column": column, "segment": value, **row})
                continue
            profile = build_reference_profile(
                ref_part, numeric=seg_numeric, categorical=seg_categorical, n_bins=settings.n_bins, n_threads=1
            )
            for row in _compare_rows(profile, cur_part, settings, n_threads=1):
                rows.append({"segment_column": column, "segment": value, **row})
        part = _decide(pd.DataFrame(rows), settings)
        scale = 1.0 / part["n_reference"].where(part["n_reference"] > 0) + 1.0 / part["n_current"].where(part["n_current"] > 0)
        part["psi_excess"] = part["psi"] - (part["_n_cells"] - 1) * scale
        excess = part["psi_excess"].where(part["status"].eq(STATUS_OK))
        part["moved_most"] = False
        if excess.notna().any():
            part.loc[excess.idxmax(), "moved_most"] = True
        parts.append(part)
    return pd.concat(parts, ignore_index=True)[list(SEGMENT_COLUMNS)]


def segment_ranking(segment_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per segment, the one that moved most first.

    Parameters
    ----------
    segment_frame : pandas.DataFrame
        Output of :func:`segment_drift`.

    Returns
    -------
    pandas.DataFrame
        Columns ``segment_column, segment, n_current`` (largest non-missing count over
        features), ``max_psi_excess``, ``top_feature`` (the feature with that excess),
        ``n_drifted`` (features drifted after FDR), ``n_tested``; sorted by
        ``max_psi_excess`` descending, untested segments last.
    """
    rows = []
    for (column, segment), part in segment_frame.groupby(["segment_column", "segment"], sort=False, dropna=False):
        tested = part[part["status"].eq(STATUS_OK)]
        if len(tested):
            top = tested.loc[tested["psi_excess"].idxmax()]
            max_excess, top_feature = float(top["psi_excess"]), str(top["feature"])
        else:
            max_excess, top_feature = float("nan"), ""
        rows.append({
            "segment_column": column, "segment": segment, "n_current": int(part["n_current"].max()),
            "max_psi_excess": max_excess, "top_feature": top_feature,
            "n_drifted": int(part["drifted"].sum()), "n_tested": len(tested),
        })
    ranking = pd.DataFrame(rows, columns=["segment_column", "segment", "n_current", "max_psi_excess", "top_feature", "n_drifted", "n_tested"])
    return ranking.sort_values("max_psi_excess", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
