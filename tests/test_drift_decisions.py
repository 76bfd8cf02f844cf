"""Decisions (FDR, floors), bad input, labels, prediction and segment drift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from clinval.drift import (
    RESULT_COLUMNS,
    SEGMENT_COLUMNS,
    DriftSettings,
    compare_label_prevalence,
    compare_period,
    compare_periods,
    label_prevalence,
    prediction_drift,
    segment_drift,
    segment_ranking,
)
from clinval.profile import build_reference_profile

NUMERIC = ["age", "sbp", "chol", "risk"]
CATEGORICAL = ["sex", "smoker", "site"]


def _cohort(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.normal(62 + 10 * shift, 10, n).round(),  # ties, like real ages
        "sbp": rng.normal(130 + 20 * shift, 20, n),
        "chol": rng.lognormal(1.6, 0.2, n),
        "risk": rng.beta(2, 8, n),
        "sex": rng.choice(["f", "m"], n),
        "smoker": rng.choice(["never", "former", "current", "nk"], n, p=[0.5, 0.25, 0.2, 0.05]),
        "site": rng.choice(["A", "B", "C"], n),
    })


def _assert_no_silent_nan(result: pd.DataFrame) -> None:
    """Every NaN statistic is explained by its row's status (wasserstein is n/a for categories)."""
    for _, row in result.iterrows():
        cells = ["statistic", "p_value", "q_value", "js_distance", "psi", "psi_critical", "missing_rate_reference", "missing_rate_current"]
        if row["kind"] == "numeric":
            cells.append("wasserstein_norm")
        if any(pd.isna(row[c]) for c in cells):
            assert row["status"].startswith("insufficient data: "), row.to_dict()
            assert not row["drifted"]
        else:
            assert row["status"] == "ok"


def test_result_has_the_contract_columns():
    reference = _cohort(1_000, 0)
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    result = compare_period(profile, _cohort(400, 1))
    assert tuple(result.columns) == RESULT_COLUMNS
    assert list(result["feature"]) == NUMERIC + CATEGORICAL
    assert set(result["test"]) == {"ks", "chi2"}
    _assert_no_silent_nan(result)


def test_q_values_are_benjamini_hochberg_of_every_test_of_the_period():
    """Distribution, missing-rate and new-category tests form one family."""
    reference = _cohort(1_000, 0)
    reference.loc[reference.index[:100], "chol"] = np.nan
    current = _cohort(500, 2, shift=0.1)
    current.loc[current.index[:80], "chol"] = np.nan
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    result = compare_period(profile, current)
    missing = result["missing_p_value"].dropna()
    new_level = result["new_level_p_value"].dropna()
    assert list(missing.index) == [NUMERIC.index("chol")]  # the only feature with missing values
    assert len(new_level) == len(CATEGORICAL) and (new_level == 1.0).all()  # no new category: cannot reject
    family = np.concatenate([result["p_value"], missing, new_level])
    q = stats.false_discovery_control(family, method="bh")
    n = len(result)
    np.testing.assert_allclose(result["q_value"], q[:n], rtol=1e-12)
    np.testing.assert_allclose(result["missing_q_value"].dropna(), q[n:n + len(missing)], rtol=1e-12)
    np.testing.assert_allclose(result["new_level_q_value"].dropna(), q[n + len(missing):], rtol=1e-12)
    np.testing.assert_array_equal(result["drifted"], result["q_value"] <= 0.05)


def test_no_drift_periods_rarely_raise_any_alarm():
    """Family-wise false alarms across 7 features after BH stay near the 5% level."""
    reference = _cohort(2_000, 0)
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    alarms = 0
    for seed in range(1, 121):
        result = compare_period(profile, _cohort(200, seed), n_threads=1)
        alarms += bool((result["drifted"] | result["missing_drifted"] | result["new_level_drifted"]).any())
    # expected <= 6 of 120 at the 5% level; 14 is > 3 binomial sd above that
    assert alarms <= 14


def test_half_sd_shift_at_n_1000_is_detected():
    profile = build_reference_profile(_cohort(5_000, 0), numeric=NUMERIC, categorical=CATEGORICAL)
    current = _cohort(1_000, 9)
    current["sbp"] += 0.5 * 20
    result = compare_period(profile, current).set_index("feature")
    assert result.loc["sbp", "drifted"]
    assert result.loc["sbp", "q_value"] < 1e-10
    assert result.loc["sbp", "wasserstein_norm"] == pytest.approx(0.5, abs=0.1)
    assert result.loc["sbp", "psi"] > result.loc["sbp", "psi_critical"]


def test_practical_floors_veto_tiny_but_significant_shifts():
    reference = _cohort(50_000, 0)
    current = _cohort(50_000, 1)
    current["sbp"] += 0.05 * 20  # significant at this n, practically small
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    plain = compare_period(profile, current).set_index("feature")
    assert plain.loc["sbp", "drifted"]
    for floor in ({"psi_floor": 0.1}, {"wasserstein_floor": 0.2}, {"js_floor": 0.1}):
        floored = compare_period(profile, current, settings=DriftSettings(**floor)).set_index("feature")
        assert not floored.loc["sbp", "drifted"], floor
        np.testing.assert_allclose(floored["q_value"], plain["q_value"])  # floors never change the test


def test_one_row_period_is_insufficient_for_every_feature():
    profile = build_reference_profile(_cohort(500, 0), numeric=NUMERIC, categorical=CATEGORICAL)
    result = compare_period(profile, _cohort(1, 5))
    assert result["status"].str.startswith("insufficient data: 1 non-missing current values").all()
    assert not result["drifted"].any()
    _assert_no_silent_nan(result)


def test_empty_period_says_so():
    profile = build_reference_profile(_cohort(500, 0), numeric=NUMERIC, categorical=CATEGORICAL)
    result = compare_period(profile, _cohort(500, 5).iloc[:0])
    assert (result["status"] == "insufficient data: the current period has no rows").all()
    _assert_no_silent_nan(result)


def test_all_missing_and_constant_columns():
    reference = _cohort(500, 0)
    reference["lab"] = 4.0  # constant in the reference
    current = _cohort(300, 1)
    current["lab"] = np.random.default_rng(1).normal(4, 1, 300)
    current["sbp"] = np.nan  # all missing in the current period
    current["chol"] = 5.0  # constant in the current period: a real, detectable shift
    profile = build_reference_profile(reference, numeric=[*NUMERIC, "lab"], categorical=CATEGORICAL)
    result = compare_period(profile, current).set_index("feature")
    assert result.loc["sbp", "status"] == "insufficient data: 0 non-missing current values of 'sbp' (min_n = 30)"
    assert result.loc["sbp", "missing_rate_current"] == 1.0
    assert result.loc["lab", "status"].startswith("insufficient data: reference values of 'lab' are constant (4)")
    assert result.loc["chol", "status"] == "ok" and result.loc["chol", "drifted"]
    _assert_no_silent_nan(result.reset_index())


def test_single_reference_category_and_unseen_categories():
    reference = _cohort(500, 0)
    reference["ward"] = "cardiology"
    current = _cohort(400, 1)
    current["ward"] = "cardiology"
    current.loc[current.index[:300], "site"] = "Z"  # a new site
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=[*CATEGORICAL, "ward"])
    result = compare_period(profile, current).set_index("feature")
    assert result.loc["ward", "status"].startswith("insufficient data: the reference has a single category")
    assert result.loc["site", "unseen_categories"] == 1
    assert result.loc["site", "unseen_rate"] == pytest.approx(0.75)
    assert result.loc["site", "drifted"] and np.isfinite(result.loc["site", "psi"])
    _assert_no_silent_nan(result.reset_index())


def test_small_reference_is_reported_per_feature():
    reference = _cohort(500, 0)
    reference.loc[reference.index[20:], "chol"] = np.nan
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    result = compare_period(profile, _cohort(300, 1)).set_index("feature")
    assert result.loc["chol", "status"] == "insufficient data: 20 non-missing reference values of 'chol' (min_n = 30)"
    assert result.loc["chol", "missing_rate_reference"] == pytest.approx(480 / 500)
    assert (result.drop(index="chol")["status"] == "ok").all()


def test_bins_must_match_the_profile_and_columns_must_exist():
    profile = build_reference_profile(_cohort(500, 0), numeric=NUMERIC, categorical=CATEGORICAL, n_bins=10)
    with pytest.raises(ValueError, match="n_bins=10 but settings.n_bins=20"):
        compare_period(profile, _cohort(100, 1), settings=DriftSettings(n_bins=20))
    with pytest.raises(KeyError, match="'site' is not in the production period"):
        compare_period(profile, _cohort(100, 1).drop(columns="site"))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"fdr_level": 0}, "fdr_level"), ({"fdr_level": 1.5}, "fdr_level"), ({"n_bins": 1}, "n_bins"),
        ({"min_n": 1}, "min_n"), ({"psi_floor": -0.1}, "psi_floor"), ({"js_floor": "big"}, "js_floor"),
    ],
)
def test_settings_validate(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DriftSettings(**kwargs)


def test_settings_are_keyword_only_with_documented_keys():
    with pytest.raises(TypeError):
        DriftSettings(0.05)  # type: ignore[misc]
    assert DriftSettings.keys() == ("fdr_level", "n_bins", "min_n", "psi_floor", "wasserstein_floor", "js_floor")


def test_compare_periods_long_format_reuses_profile():
    profile = build_reference_profile(_cohort(1_000, 0), numeric=NUMERIC, categorical=CATEGORICAL)
    periods = {"1990": _cohort(300, 1), "1991": _cohort(300, 2, shift=0.5)}
    result = compare_periods(profile, periods)
    assert list(result.columns) == ["period", *RESULT_COLUMNS]
    assert list(result["period"].unique()) == ["1990", "1991"]
    single = compare_period(profile, periods["1991"])
    pd.testing.assert_frame_equal(result[result.period == "1991"].drop(columns="period").reset_index(drop=True), single)
    assert result[result.period == "1991"].drifted.sum() > result[result.period == "1990"].drifted.sum()


def test_prediction_drift_detects_miscalibrated_shift():
    rng = np.random.default_rng(4)
    result = prediction_drift(reference_scores=rng.beta(2, 8, 3_000), current_scores=rng.beta(2, 6, 800))
    assert result.loc[0, "feature"] == "predicted_risk" and result.loc[0, "drifted"]
    assert result.loc[0, "q_value"] == result.loc[0, "p_value"]


def test_label_prevalence_wilson_matches_statsmodels():
    y = np.r_[np.ones(27), np.zeros(73), [np.nan] * 3]
    result = label_prevalence(y)
    low, high = proportion_confint(27, 100, alpha=0.05, method="wilson")
    assert (result.n, result.n_positive, result.n_missing) == (100, 27, 3)
    assert result.prevalence == 0.27
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_label_prevalence_one_class_and_bad_labels():
    only_negative = label_prevalence([0] * 50)
    assert only_negative.status == "ok" and only_negative.ci_low == 0.0
    assert only_negative.ci_high == pytest.approx(proportion_confint(0, 50, method="wilson")[1], rel=1e-12)
    assert label_prevalence([np.nan, np.nan]).status == "insufficient data: no non-missing labels"
    with pytest.raises(ValueError, match="'yes'"):
        label_prevalence([0, 1, "yes"])


def test_label_prevalence_shift_fisher_and_newcombe():
    reference = np.r_[np.ones(270), np.zeros(730)]
    current = np.r_[np.ones(68), np.zeros(432)]  # 27% -> 13.6%, as in MONICA
    shift = compare_label_prevalence(reference, current)
    assert shift.difference == pytest.approx(0.136 - 0.27)
    assert shift.p_value == pytest.approx(stats.fisher_exact([[270, 730], [68, 432]]).pvalue, rel=1e-12)
    assert shift.ci_low < shift.difference < shift.ci_high < 0
    assert math.isnan(compare_label_prevalence(reference, []).difference)


def test_segment_drift_points_at_the_segment_that_moved():
    reference = _cohort(6_000, 0)
    current = _cohort(3_000, 1)
    women = current["sex"] == "f"
    current.loc[women, "sbp"] += 15  # only women's blood pressure moved
    current.loc[current.index[:10], "site"] = "tiny"  # a segment absent from the reference
    result = segment_drift(reference, current, segment_columns=["sex", "site"], numeric=NUMERIC, categorical=CATEGORICAL)
    assert tuple(result.columns) == SEGMENT_COLUMNS
    top = result[result.moved_most & (result.segment_column == "sex")]
    assert len(top) == 1 and top.iloc[0]["segment"] == "f" and top.iloc[0]["feature"] == "sbp"
    assert "sex" not in set(result[result.segment_column == "sex"].feature)
    tiny = result[(result.segment_column == "site") & (result.segment == "tiny")]
    assert tiny["status"].str.contains("has 0 reference rows").all()
    ranking = segment_ranking(result)
    assert ranking.iloc[0][["segment_column", "segment", "top_feature"]].tolist() == ["sex", "f", "sbp"]


@settings(max_examples=25, deadline=None)
@given(
    n_reference=st.integers(0, 80),
    n_current=st.integers(0, 80),
    missing=st.floats(0.0, 1.0),
    constant=st.booleans(),
    new_levels=st.booleans(),
    seed=st.integers(0, 1_000),
)
def test_any_messy_period_gives_explained_rows_never_a_crash(n_reference, n_current, missing, constant, new_levels, seed):
    rng = np.random.default_rng(seed)

    def messy(n: int, levels: list[str]) -> pd.DataFrame:
        x = np.full(n, 3.0) if constant else rng.normal(size=n)
        x[rng.random(n) < missing] = np.nan
        k = rng.choice(levels, n).astype(object)
        k[rng.random(n) < missing] = None
        return pd.DataFrame({"x": x, "k": k})

    reference = messy(n_reference, ["a", "b"])
    current = messy(n_current, ["a", "b", "z"] if new_levels else ["a", "b"])
    profile = build_reference_profile(reference, numeric=["x"], categorical=["k"])
    result = compare_period(profile, current, settings=DriftSettings(min_n=5))
    assert len(result) == 2
    _assert_no_silent_nan(result)


# ---------------------------------------------------------------------------- missing rate and new categories


def test_missing_rate_test_is_fishers_exact_test():
    from clinval.drift import missing_rate_test

    p = missing_rate_test(reference_missing=300, reference_rows=1_000, current_missing=450, current_rows=1_000)
    assert p == pytest.approx(stats.fisher_exact([[300, 700], [450, 550]]).pvalue, rel=1e-12)
    assert math.isnan(missing_rate_test(reference_missing=0, reference_rows=500, current_missing=0, current_rows=200))


def test_new_level_p_value_is_the_hypergeometric_chance_that_no_value_fell_in_the_reference():
    from clinval.drift import new_level_test

    # one unseen level with 10 values; every seen level is common: p = C(n, 10) / C(n + m, 10)
    p = new_level_test(reference_counts=[3_000, 2_000], current_counts=[500, 490], unseen_counts=[10])
    assert p == pytest.approx(stats.hypergeom.pmf(10, 6_000, 10, 1_000), rel=1e-9)
    # every level at least as likely to have been missed by the reference is added (union bound)
    p = new_level_test(reference_counts=[990, 1, 1, 0], current_counts=[997, 0, 0, 0], unseen_counts=[1, 1])
    assert p == 1.0  # four levels with one value each, each missed with chance ~1/2: capped
    p = new_level_test(reference_counts=[990, 5], current_counts=[999, 0], unseen_counts=[1])
    n, total = 1_000, 1_995
    expected = stats.hypergeom.pmf(1, total, 1, n) + stats.hypergeom.pmf(5, total, 5, n)  # + the common level: ~0
    assert p == pytest.approx(expected, rel=1e-9)
    assert new_level_test(reference_counts=[5, 5], current_counts=[5, 5], unseen_counts=[]) == 1.0


def test_new_level_test_holds_its_level_when_the_reference_misses_rare_levels():
    """No drift, 30 rare levels (0.3% each) besides 3 common ones, n = 100 against m = 500:
    unseen levels appear in most periods, yet the test rejects at most at its level."""
    from clinval.drift import new_level_test

    rng = np.random.default_rng(4)
    shares = np.r_[[0.5, 0.25, 0.16], np.full(30, 0.003)]
    rejected, any_unseen, reps = 0, 0, 1_000
    for _ in range(reps):
        reference, current = rng.multinomial(500, shares), rng.multinomial(100, shares)
        unseen = current[reference == 0]
        any_unseen += (unseen > 0).any()
        p = new_level_test(reference_counts=reference[reference > 0], current_counts=current[reference > 0],
                           unseen_counts=unseen)
        rejected += p <= 0.05
    assert any_unseen / reps > 0.3  # a raw count of unseen levels would alarm in these periods
    assert rejected / reps <= 0.05  # exact per level, union bound over levels: conservative


def test_missing_rate_and_new_category_drift_are_found_and_named():
    reference = _cohort(5_000, 0)
    reference.loc[reference.sample(frac=0.30, random_state=0).index, "chol"] = np.nan
    current = _cohort(1_000, 1)
    current.loc[current.sample(frac=0.45, random_state=1).index, "chol"] = np.nan  # 30% -> 45% missing
    current.loc[current.index[:10], "site"] = "new"  # a new site in 1% of rows
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    result = compare_period(profile, current).set_index("feature")
    assert result.loc["chol", "missing_drifted"] and not result.loc["chol", "drifted"]
    assert result.loc["site", "new_level_drifted"] and result.loc["site", "new_level_p_value"] < 1e-6
    assert not result.drop(index="chol")["missing_drifted"].any()
    assert not result.drop(index="site")["new_level_drifted"].any()


def test_a_column_that_became_entirely_missing_is_flagged():
    reference = _cohort(500, 0)
    current = _cohort(300, 1)
    current["sbp"] = np.nan
    result = compare_period(build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL),
                            current).set_index("feature")
    assert result.loc["sbp", "status"].startswith("insufficient data") and not result.loc["sbp", "drifted"]
    assert result.loc["sbp", "missing_drifted"]
