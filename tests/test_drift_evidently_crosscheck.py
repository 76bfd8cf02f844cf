"""Cross-check with evidently 0.7 where the methods and bins coincide.

Where they coincide (tolerance 1e-10 relative, i.e. floating-point noise):

* KS p-value (both call ``scipy.stats.ks_2samp``);
* Wasserstein distance normed by the reference population SD;
* PSI and Jensen-Shannon on categorical features, and on a numeric feature whose
  reference-quantile bins are its distinct values (evidently bins features with <= 20
  distinct values by value);
* the chi-square cells: evidently's p-value equals a goodness-of-fit test on *our*
  category counts.

Where they differ by design (asserted, so a change is noticed):

* numeric PSI: evidently bins the pooled data with Sturges' rule and ignores a bin-count
  setting; we use reference-quantile bins. The PSI formula itself agrees on evidently's
  bins.
* chi-square: evidently runs a goodness-of-fit test treating the reference proportions
  as exact; we test homogeneity of the 2 x K table (the reference is a sample too), so
  our p-values are larger; the statistics approach each other when m >> n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift

from clinval.drift import compare_period, population_stability_index
from clinval.profile import build_reference_profile, summarise_period

REL = 1e-10


def _data(m: int, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({
        "x": rng.normal(50, 10, m),
        "d": rng.choice([0.0, 1.0, 2.0, 3.0, 4.0], m),
        "c": rng.choice(["a", "b", "c", "d"], m, p=[0.4, 0.3, 0.2, 0.1]),
    })
    current = pd.DataFrame({
        "x": rng.normal(51, 11, n),
        "d": rng.choice([0.0, 1.0, 2.0, 3.0, 4.0], n, p=[0.15, 0.2, 0.2, 0.2, 0.25]),
        "c": rng.choice(["a", "b", "c", "d"], n, p=[0.35, 0.3, 0.2, 0.15]),
    })
    return reference, current


def _evidently(reference: pd.DataFrame, current: pd.DataFrame, checks: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    definition = DataDefinition(numerical_columns=["x", "d"], categorical_columns=["c"])
    snapshot = Report([ValueDrift(column=column, method=method) for column, method in checks]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    values = [metric["value"] for metric in snapshot.dict()["metrics"]]
    assert len(values) == len(checks)
    return dict(zip(checks, (float(v) for v in values)))


@pytest.fixture(scope="module")
def crosscheck():
    reference, current = _data(3_000, 2_000, seed=1)
    checks = [("x", "ks"), ("x", "wasserstein"), ("x", "psi"), ("d", "psi"), ("d", "jensenshannon"),
              ("c", "psi"), ("c", "jensenshannon"), ("c", "chisquare")]
    profile = build_reference_profile(reference, numeric=["x", "d"], categorical=["c"])
    ours = compare_period(profile, current).set_index("feature")
    return reference, current, profile, ours, _evidently(reference, current, checks)


def test_ks_p_value_agrees(crosscheck):
    reference, current, _, ours, theirs = crosscheck
    assert ours.loc["x", "p_value"] == pytest.approx(theirs[("x", "ks")], rel=REL)
    assert ours.loc["x", "p_value"] == pytest.approx(stats.ks_2samp(reference["x"], current["x"]).pvalue, rel=REL)


def test_wasserstein_norm_agrees(crosscheck):
    _, _, _, ours, theirs = crosscheck
    assert ours.loc["x", "wasserstein_norm"] == pytest.approx(theirs[("x", "wasserstein")], rel=REL)


def test_categorical_psi_and_js_agree(crosscheck):
    _, _, _, ours, theirs = crosscheck
    assert ours.loc["c", "psi"] == pytest.approx(theirs[("c", "psi")], rel=REL)
    assert ours.loc["c", "js_distance"] == pytest.approx(theirs[("c", "jensenshannon")], rel=REL)


def test_numeric_psi_agrees_where_bins_are_the_distinct_values(crosscheck):
    _, _, profile, ours, theirs = crosscheck
    np.testing.assert_array_equal(profile.numeric["d"].bin_edges, [0.0, 1.0, 2.0, 3.0])  # the premise
    assert ours.loc["d", "psi"] == pytest.approx(theirs[("d", "psi")], rel=REL)
    assert ours.loc["d", "js_distance"] == pytest.approx(theirs[("d", "jensenshannon")], rel=REL)


def test_numeric_psi_formula_agrees_on_evidently_bins_but_bins_differ(crosscheck):
    reference, current, _, ours, theirs = crosscheck
    edges = np.histogram_bin_edges(np.concatenate([reference["x"], current["x"]]), bins="sturges")
    ref_counts, cur_counts = np.histogram(reference["x"], edges)[0], np.histogram(current["x"], edges)[0]
    assert (ref_counts > 0).all() and (cur_counts > 0).all()  # no smoothing involved on either side
    assert population_stability_index(ref_counts, cur_counts) == pytest.approx(theirs[("x", "psi")], rel=REL)
    assert ours.loc["x", "psi"] != pytest.approx(theirs[("x", "psi")], rel=1e-3)  # different bins, by design


def test_chi_square_cells_agree_and_tests_differ_by_design(crosscheck):
    reference, current, profile, ours, theirs = crosscheck
    summary = summarise_period(current, profile).categorical["c"]
    ref_counts, cur_counts = profile.categorical["c"].counts, summary.counts
    goodness_of_fit = stats.chisquare(cur_counts, ref_counts * cur_counts.sum() / ref_counts.sum())
    assert goodness_of_fit.pvalue == pytest.approx(theirs[("c", "chisquare")], rel=REL)
    # homogeneity accounts for the reference's own sampling noise: larger p, smaller statistic
    assert ours.loc["c", "statistic"] < goodness_of_fit.statistic
    assert ours.loc["c", "p_value"] > goodness_of_fit.pvalue


def test_chi_square_tests_converge_when_the_reference_is_much_larger():
    reference, current = _data(200_000, 1_000, seed=2)
    profile = build_reference_profile(reference, numeric=[], categorical=["c"])
    ours = compare_period(profile, current).iloc[0]
    theirs = _evidently(reference, current, [("c", "chisquare")])[("c", "chisquare")]
    # GOF statistic ~ homogeneity statistic * (n + m) / m; p-values within a few percent
    ref_counts = profile.categorical["c"].counts
    cur_counts = summarise_period(current, profile).categorical["c"].counts
    gof = stats.chisquare(cur_counts, ref_counts * cur_counts.sum() / ref_counts.sum()).statistic
    assert ours["statistic"] == pytest.approx(gof, rel=0.02)
    assert ours["p_value"] == pytest.approx(theirs, rel=0.05)
