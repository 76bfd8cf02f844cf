"""The statistics against scipy, textbook values and simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from clinval.drift import (
    DriftSettings,
    _kstwo_sf,
    _ks_wasserstein_sorted,
    _smirnov_sf_strided,
    compare_period,
    population_stability_index,
    psi_critical_value,
)
from clinval.profile import _bin_counts_sorted, _compress_ties, _quantile_edges, build_reference_profile


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 400),
    n=st.integers(1, 400),
    discrete=st.booleans(),
)
def test_merge_ks_and_wasserstein_equal_scipy(seed, m, n, discrete):
    rng = np.random.default_rng(seed)
    if discrete:  # ties within and across samples
        a, b = rng.integers(0, 6, m).astype(float), rng.integers(1, 8, n).astype(float)
    else:
        a, b = rng.normal(size=m), rng.standard_t(3, size=n)
    d, w1 = _ks_wasserstein_sorted(np.sort(a), np.sort(b))
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w1 == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12, abs=1e-12)


def test_merge_is_exact_across_block_boundaries():
    # several merge blocks, heavy ties straddling block edges, unequal sizes
    rng = np.random.default_rng(7)
    a = np.sort(np.round(rng.normal(size=300_001), 2))
    b = np.sort(np.round(rng.normal(0.02, 1.1, size=170_003), 2))
    d, w1 = _ks_wasserstein_sorted(a, b)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w1 == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)


@pytest.mark.parametrize(("compress_reference", "compress_current"), [(True, False), (False, True), (True, True)])
def test_merge_with_tie_counts_equals_scipy(compress_reference, compress_current):
    """Samples stored as distinct values with counts (ages, scores) give the same numbers."""
    rng = np.random.default_rng(11)
    a = np.sort(np.round(rng.normal(60, 12, 250_003)))
    b = np.sort(np.round(rng.normal(61, 12, 90_001)) if compress_current else rng.normal(61, 12, 90_001))
    ra, ca = _compress_ties(a) if compress_reference else (a, None)
    rb, cb = _compress_ties(b) if compress_current else (b, None)
    assert (ca is not None) == compress_reference and (cb is not None) == compress_current
    d, w1 = _ks_wasserstein_sorted(ra, rb, ca, cb)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w1 == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)


def test_tied_reference_is_stored_compactly_and_expands_exactly():
    values = np.round(np.random.default_rng(2).normal(60, 12, 50_000))
    profile = build_reference_profile(pd.DataFrame({"age": values}), numeric=["age"], categorical=[])
    p = profile.numeric["age"]
    assert p.support_counts is not None and p.nbytes < values.nbytes / 10
    np.testing.assert_array_equal(p.sorted_values, np.sort(values))


@pytest.mark.parametrize("n", [10_001, 60_000, 400_000])
@pytest.mark.parametrize("z2", [2.2, 5.0, 60.0, 300.0])
def test_strided_smirnov_equals_scipy(n, z2):
    d = math.sqrt(z2 / n)
    assert _smirnov_sf_strided(n, d) == pytest.approx(special.smirnov(n, d), rel=1e-8)


@pytest.mark.parametrize("n", [50, 5_000, 50_000])
@pytest.mark.parametrize("z2", [0.3, 1.0, 2.5, 8.0, 40.0])
def test_kolmogorov_sf_equals_scipy_kstwo(n, z2):
    d = math.sqrt(z2 / n)
    assert _kstwo_sf(d, n) == pytest.approx(stats.kstwo.sf(d, n), rel=1e-8, abs=1e-300)


def _two_frames(m: int, n: int, shift: float, seed: int, *, discrete: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"x": rng.normal(size=m), "k": rng.choice(list("abcd"), m, p=[0.4, 0.3, 0.2, 0.1])})
    current = pd.DataFrame({"x": rng.normal(shift, size=n), "k": rng.choice(list("abcd"), n, p=[0.35, 0.3, 0.2, 0.15])})
    if discrete:  # integer scores: stored as distinct values with counts
        reference["x"] = np.round(reference["x"] * 5)
        current["x"] = np.round(current["x"] * 5)
    return reference, current


@pytest.mark.parametrize(
    ("m", "n", "shift", "discrete"),
    [(800, 300, 0.1, False), (30_000, 12_000, 0.0, False), (30_000, 12_000, 0.03, False), (50_000, 20_000, 0.08, False),
     (800, 300, 0.1, True), (30_000, 12_000, 0.03, True), (2_000, 500, 0.5, True)],
)
def test_compare_period_numeric_row_equals_scipy(m, n, shift, discrete):
    reference, current = _two_frames(m, n, shift, seed=m + n, discrete=discrete)
    profile = build_reference_profile(reference, numeric=["x"], categorical=["k"])
    row = compare_period(profile, current).set_index("feature").loc["x"]
    expected = stats.ks_2samp(reference["x"], current["x"])
    assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    if discrete and expected.pvalue > 1 / 2001:  # heavily tied: the permutation p-value (next test)
        assert row["p_value"] <= expected.pvalue + 0.01  # scipy's is conservative with ties
    else:
        assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)
    w = stats.wasserstein_distance(reference["x"], current["x"]) / np.std(reference["x"])
    assert row["wasserstein_norm"] == pytest.approx(w, rel=1e-12)
    edges = profile.numeric["x"].bin_edges
    counts_ref = np.bincount(np.searchsorted(edges, reference["x"]), minlength=edges.size + 1)
    counts_cur = np.bincount(np.searchsorted(edges, current["x"]), minlength=edges.size + 1)
    r, c = counts_ref / m, counts_cur / n
    assert row["psi"] == pytest.approx(np.sum((r - c) * np.log(r / c)), rel=1e-12)
    assert row["js_distance"] == pytest.approx(jensenshannon(r, c), rel=1e-12)


@pytest.mark.parametrize(("m", "n", "shift"), [(800, 300, 0.1), (2_500, 1_000, 0.05)])
def test_tied_values_get_the_permutation_p_value(m, n, shift):
    """Heavily tied data (about 30 distinct values): the p-value is the permutation
    p-value of the KS statistic, checked against scipy.stats.permutation_test."""
    reference, current = _two_frames(m, n, shift, seed=m + n, discrete=True)
    profile = build_reference_profile(reference, numeric=["x"], categorical=["k"])
    row = compare_period(profile, current).set_index("feature").loc["x"]
    grid = np.unique(np.r_[reference["x"], current["x"]])

    def ks(a, b, axis):
        fa = (a[..., None] <= grid).mean(axis=-2)
        fb = (b[..., None] <= grid).mean(axis=-2)
        return np.abs(fa - fb).max(axis=-1)

    expected = stats.permutation_test((reference["x"].to_numpy(), current["x"].to_numpy()), ks, vectorized=True,
                                      n_resamples=4_000, batch=100, alternative="greater",
                                      random_state=np.random.default_rng(0))
    # two Monte Carlo estimates of one p-value (2,000 and 4,000 draws): SD of the difference below 0.006 here
    assert row["p_value"] == pytest.approx(expected.pvalue, abs=0.02)
    assert row["p_value"] < stats.ks_2samp(reference["x"], current["x"]).pvalue  # scipy's is conservative


def test_compare_period_categorical_row_equals_scipy_with_unseen_cell():
    reference, current = _two_frames(2_000, 700, 0.0, seed=3)
    current.loc[current.index[:20], "k"] = "new"  # unseen in the reference
    current.loc[current.index[20:25], "k"] = None  # missing
    profile = build_reference_profile(reference, numeric=[], categorical=["k"])
    row = compare_period(profile, current).iloc[0]
    ref_counts = reference["k"].value_counts().reindex(list("abcd")).to_numpy()
    cur_counts = current["k"].value_counts().reindex(list("abcd")).to_numpy()
    table = np.array([[*ref_counts, 0], [*cur_counts, 20]])
    expected = stats.chi2_contingency(table, correction=False)
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-10, abs=1e-300)
    assert row["unseen_categories"] == 1
    assert row["unseen_rate"] == pytest.approx(20 / 695)
    assert row["missing_rate_current"] == pytest.approx(5 / 700)
    assert row["js_distance"] == pytest.approx(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum()), rel=1e-12)
    # the unseen cell has no reference mass: half an observation
    p_ref = np.append(ref_counts / 2000, 0.5 / 2000)
    p_cur = table[1] / 695
    assert row["psi"] == pytest.approx(np.sum((p_ref - p_cur) * np.log(p_ref / p_cur)), rel=1e-12)


def test_psi_textbook_value():
    # (0.5 - 0.25) ln 2 + (0.5 - 0.75) ln(2/3) = 0.25 ln 3
    assert population_stability_index([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3), rel=1e-14)
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)


def test_psi_zero_cells_are_finite_and_empty_cells_are_dropped():
    assert np.isfinite(population_stability_index([10, 0, 5], [3, 4, 0]))
    assert population_stability_index([10, 0, 5], [20, 0, 10]) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError):
        population_stability_index([1, 2], [0, 0])


def test_psi_critical_value_formula():
    value = psi_critical_value(n_cells=10, n_reference=1000, n_current=100, alpha=0.05)
    assert value == pytest.approx(stats.chi2.ppf(0.95, 9) * (1 / 1000 + 1 / 100), rel=1e-14)
    assert math.isnan(psi_critical_value(n_cells=1, n_reference=10, n_current=10, alpha=0.05))


@pytest.mark.parametrize(("m", "n"), [(5_000, 1_000), (2_000, 2_000), (20_000, 300)])
def test_psi_critical_value_holds_by_simulation(m, n):
    """Null simulation: PSI on reference-quantile bins exceeds the 95% critical value ~5% of the time."""
    rng = np.random.default_rng(m + n)
    reps, exceed, values = 1_200, 0, []
    for _ in range(reps):
        ref = np.sort(rng.normal(size=m))
        cur = np.sort(rng.normal(size=n))
        edges = _quantile_edges(ref, 10)
        psi = population_stability_index(_bin_counts_sorted(ref, edges), _bin_counts_sorted(cur, edges))
        critical = psi_critical_value(n_cells=edges.size + 1, n_reference=m, n_current=n, alpha=0.05)
        exceed += psi > critical
        values.append(psi)
    # binomial sd at 1200 reps is 0.63 points; allow the approximation ~1.5 points
    assert 0.03 <= exceed / reps <= 0.07
    assert np.quantile(values, 0.95) == pytest.approx(critical, rel=0.1)


def test_fixed_threshold_fires_on_identical_distributions_at_small_n():
    """Why we do not use PSI > 0.1: at n = 100 it fires on most no-drift periods (DESIGN section 4)."""
    rng = np.random.default_rng(0)
    fires = 0
    for _ in range(400):
        ref, cur = np.sort(rng.normal(size=100)), np.sort(rng.normal(size=100))
        edges = _quantile_edges(ref, 10)
        fires += population_stability_index(_bin_counts_sorted(ref, edges), _bin_counts_sorted(cur, edges)) > 0.1
    assert fires / 400 > 0.5
    # while the critical value at these sizes is far above 0.1
    assert psi_critical_value(n_cells=10, n_reference=100, n_current=100, alpha=0.05) > 0.3


def test_threads_give_identical_results():
    reference, current = _two_frames(20_000, 15_000, 0.05, seed=11)
    for i in range(4):
        reference[f"x{i}"] = reference["x"] * (i + 1)
        current[f"x{i}"] = current["x"] * (i + 1)
    numeric = ["x", "x0", "x1", "x2", "x3"]
    profile = build_reference_profile(reference, numeric=numeric, categorical=["k"])
    one = compare_period(profile, current, n_threads=1)
    two = compare_period(profile, current, n_threads=2, settings=DriftSettings())
    pd.testing.assert_frame_equal(one, two)
