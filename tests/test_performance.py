"""Discrimination and calibration estimates against known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logit
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from clinval import performance as pf


def _simulate(n: int, seed: int, *, slope: float = 1.0, shift: float = 0.0):
    """Risks and outcomes whose true calibration slope and intercept are known."""
    rng = np.random.default_rng(seed)
    risk = expit(rng.normal(-1.2, 1.0, n))
    y = (rng.random(n) < expit(shift + slope * logit(risk))).astype(int)
    return y, risk


def _delong_by_definition(y, s):
    """DeLong's structural components straight from the definition, O(m*n)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    return psi.mean(), var


def test_auroc_point_equals_sklearn_and_variance_equals_definition():
    y, risk = _simulate(400, 1)
    risk = np.round(risk, 2)  # ties, which the midrank algorithm must handle
    est = pf.auroc(y, risk)
    auc, var = _delong_by_definition(y, risk)
    assert est.value == pytest.approx(roc_auc_score(y, risk), abs=1e-12)
    assert est.value == pytest.approx(auc, abs=1e-12)
    se = math.sqrt(var) / (auc * (1 - auc))
    z = stats.norm.ppf(0.975)
    assert est.lower == pytest.approx(expit(logit(auc) - z * se), abs=1e-12)
    assert est.upper == pytest.approx(expit(logit(auc) + z * se), abs=1e-12)


def test_auroc_interval_covers_the_truth_at_the_nominal_rate():
    # the population AUROC of this design, from one very large sample
    y_big, r_big = _simulate(400_000, 99)
    truth = roc_auc_score(y_big, r_big)
    covered = []
    for seed in range(300):
        est = pf.auroc(*_simulate(300, seed))
        covered.append(est.lower <= truth <= est.upper)
    # 95% nominal; 300 replicates -> binomial SD 1.3 points
    assert 0.91 <= np.mean(covered) <= 0.985


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    y, risk = _simulate(300, 3)
    diff = pf.auroc_difference(y, risk, risk)
    assert diff.difference == 0 and diff.lower == 0 and diff.upper == 0 and diff.p_value == 1.0


def test_paired_difference_variance_is_smaller_than_unpaired_for_correlated_models():
    y, risk = _simulate(500, 4)
    rng = np.random.default_rng(4)
    other = expit(logit(risk) + rng.normal(0, 0.3, risk.size))
    diff = pf.auroc_difference(y, other, risk)
    a1, a0 = pf.auroc(y, other), pf.auroc(y, risk)
    assert diff.difference == pytest.approx(a1.value - a0.value, abs=1e-12)
    _, v1 = _delong_by_definition(y, other)
    _, v0 = _delong_by_definition(y, risk)
    paired_width = diff.upper - diff.lower
    unpaired_width = 2 * stats.norm.ppf(0.975) * math.sqrt(v1 + v0)
    assert paired_width < unpaired_width


def test_bootstrap_metrics_point_values_equal_sklearn():
    y, risk = _simulate(300, 5)
    ap = pf.auprc(y, risk, n_bootstrap=200)
    br = pf.brier(y, risk, n_bootstrap=200)
    assert ap.value == pytest.approx(average_precision_score(y, risk))
    assert br.value == pytest.approx(brier_score_loss(y, risk))
    assert ap.lower < ap.value < ap.upper and br.lower < br.value < br.upper


@pytest.mark.parametrize("slope", [0.6, 1.0, 1.8])
def test_calibration_slope_recovers_a_known_slope(slope):
    y, risk = _simulate(20_000, 6, slope=slope)
    est = pf.calibration_slope(y, risk)
    assert est.lower < slope < est.upper
    assert est.value == pytest.approx(slope, abs=0.08)


@pytest.mark.parametrize("shift", [-0.5, 0.0, 0.4])
def test_calibration_intercept_recovers_a_known_shift(shift):
    y, risk = _simulate(20_000, 7, shift=shift)
    est = pf.calibration_intercept(y, risk)
    assert est.lower < shift < est.upper


def test_calibration_intercept_uses_the_sandwich_standard_error():
    y, risk = _simulate(800, 14, slope=0.5)
    est = pf.calibration_intercept(y, risk)
    mu = expit(est.value + logit(risk))
    se = math.sqrt(np.sum((y - mu) ** 2)) / np.sum(mu * (1 - mu))  # HC0 for one parameter
    z = stats.norm.ppf(0.975)
    assert (est.lower, est.upper) == pytest.approx((est.value - z * se, est.value + z * se), rel=1e-6)
    assert "robust" in est.method


def test_calibration_intercept_covers_when_the_slope_is_not_one():
    """Over-fitted model (true slope 0.5, wide risks): the model-based SE covered about 90%."""
    rng = np.random.default_rng(15)
    lp_big = rng.normal(-1.2, 2.0, 2_000_000)
    from scipy.optimize import brentq

    truth = brentq(lambda a: np.mean(expit(0.5 * lp_big) - expit(a + lp_big)), -3, 3)  # the pseudo-true intercept
    covered, reps = 0, 400
    for _ in range(reps):
        lp = rng.normal(-1.2, 2.0, 500)
        y = (rng.random(500) < expit(0.5 * lp)).astype(int)
        est = pf.calibration_intercept(y, expit(lp))
        covered += est.lower <= truth <= est.upper
    # binomial SD 1.1 points at 95% and 400 replicates
    assert covered / reps >= 0.925, covered / reps


def test_observed_expected_and_its_delta_method_interval():
    y = np.array([1] * 30 + [0] * 170)
    risk = np.full(200, 0.2)  # expected 40 events
    est = pf.observed_expected(y, risk)
    assert est.value == pytest.approx(30 / 40)
    se = math.sqrt((1 - 30 / 200) / 30)
    assert est.lower == pytest.approx(0.75 * math.exp(-1.959963984540054 * se))
    assert est.upper == pytest.approx(0.75 * math.exp(1.959963984540054 * se))


def test_prevalence_wilson_interval_matches_textbook():
    # Wilson interval for 81/263 (Newcombe 1998, example): 0.2553 to 0.3662
    y = np.array([1] * 81 + [0] * 182)
    est = pf.prevalence(y)
    assert est.lower == pytest.approx(0.2553, abs=5e-5) and est.upper == pytest.approx(0.3662, abs=5e-5)


@pytest.mark.parametrize("fn", [pf.auroc, pf.calibration_slope, pf.calibration_intercept])
def test_one_outcome_class_says_insufficient_data(fn):
    est = fn(np.zeros(50), np.linspace(0.1, 0.4, 50))
    assert not est.ok and est.status.startswith("insufficient data") and math.isnan(est.value)


def test_evaluate_never_returns_a_silent_nan():
    table = pf.evaluate(np.array([1, 0]), np.array([0.2, 0.3]), n_bootstrap=50)
    assert (table["value"].isna() == (table["status"] != "ok")).all()


def test_calibration_curve_bins_never_rest_on_fewer_than_min_cell_size():
    y, risk = _simulate(95, 8)
    curve = pf.calibration_curve(y, risk, n_bins=10, min_cell_size=11).table
    assert curve["n"].min() >= 11 and curve["n"].sum() == 95


def test_cbpe_expected_metrics_equal_the_monte_carlo_means():
    rng = np.random.default_rng(9)
    risk = np.round(rng.beta(2, 6, 400), 3)
    estimator = pf.PerformanceEstimator.fit(*_simulate(5000, 10))
    p = estimator.calibrated(risk)
    sims = {"AUROC": [], "sensitivity": [], "specificity": []}
    for _ in range(3000):
        y = rng.random(risk.size) < p
        sims["AUROC"].append(roc_auc_score(y, risk))
        sims["sensitivity"].append(np.mean(risk[y] >= 0.3))
        sims["specificity"].append(np.mean(risk[~y] < 0.3))
    table = estimator.estimate(risk, threshold=0.3, n_simulations=200).set_index("metric")
    # ratio-of-expectations vs expectation-of-ratio differ by O(1/n); SE of the MC mean ~ 0.0005
    for metric, values in sims.items():
        assert table.loc[metric, "value"] == pytest.approx(np.mean(values), abs=0.003), metric
    assert table.loc["prevalence", "value"] == pytest.approx(p.mean())


def test_realised_metrics_equal_sklearn():
    y, risk = _simulate(700, 13)
    risk = np.round(risk, 2)  # ties count one half
    got = pf.realised_metrics(y, risk, threshold=0.25)
    pred = risk >= 0.25
    assert got["AUROC"] == pytest.approx(roc_auc_score(y, risk), abs=1e-12)
    assert got["Brier"] == pytest.approx(brier_score_loss(y, risk), abs=1e-12)
    assert got["prevalence"] == pytest.approx(y.mean())
    assert got["sensitivity"] == pytest.approx(pred[y == 1].mean()) and got["specificity"] == pytest.approx(1 - pred[y == 0].mean())


def test_cbpe_tracks_a_pure_case_mix_shift():
    y_ref, risk_ref = _simulate(20_000, 11)
    estimator = pf.PerformanceEstimator.fit(y_ref, risk_ref)
    # a production period with only low-risk patients: realised AUROC falls, and CBPE sees it
    y_new, risk_new = _simulate(20_000, 12)
    low = risk_new < np.quantile(risk_new, 0.5)
    estimate = estimator.estimate(risk_new[low], n_simulations=100).set_index("metric").loc["AUROC"]
    realised = roc_auc_score(y_new[low], risk_new[low])
    assert estimate["lower"] - 0.01 <= realised <= estimate["upper"] + 0.01
    assert estimate["value"] < pf.auroc(y_ref, risk_ref).value - 0.03


def test_cbpe_interval_covers_the_realised_auroc_with_a_small_reference():
    """Calibrated model, covariate shift, reference of 500 and periods of 1,000 (known truth:
    outcomes follow the risk). Without the calibrator's uncertainty the interval covered
    about 65% here; with it, about 95%."""
    rng = np.random.default_rng(21)
    covered = {"AUROC": 0, "prevalence": 0, "sensitivity": 0}
    reps = 80
    for _ in range(reps):
        ref_risk = expit(rng.normal(-1.5, 1.0, 500))
        estimator = pf.PerformanceEstimator.fit((rng.random(500) < ref_risk).astype(int), ref_risk)
        risk = expit(rng.normal(-0.8, 0.7, 1000))
        realised = pf.realised_metrics((rng.random(1000) < risk).astype(int), risk, threshold=0.2)
        table = pf.against_realised(estimator.estimate(risk, threshold=0.2, n_simulations=300, seed=1), realised)
        for metric in covered:
            covered[metric] += not table.set_index("metric").loc[metric, "outside"]
    # binomial SD at 95% and 80 replicates: 2.4 points
    assert all(c / reps >= 0.88 for c in covered.values()), covered


def test_against_realised_flags_only_values_outside_the_interval():
    table = pd.DataFrame({"metric": ["AUROC", "prevalence", "Brier"], "value": [0.7, 0.2, 0.15],
                          "lower": [0.65, 0.18, 0.14], "upper": [0.75, 0.22, math.nan]})
    out = pf.against_realised(table, {"AUROC": 0.80, "prevalence": 0.20, "Brier": 0.5})
    assert out["outside"].tolist() == [True, False, None]
    assert pf.against_realised(table, None)["outside"].tolist() == [None, None, None]


def test_cbpe_with_too_few_reference_events_says_so():
    estimator = pf.PerformanceEstimator.fit(np.r_[1, np.zeros(50)], np.linspace(0.1, 0.5, 51))
    table = estimator.estimate(np.linspace(0.1, 0.5, 40))
    assert table["status"].str.startswith("insufficient data").all() and table["value"].isna().all()


def test_calibration_curve_merges_bins_that_ties_leave_small():
    # found by the fairness audit: tied risks gave a bin of 8 patients
    risk = np.repeat([0.1, 0.2, 0.3], [8, 13, 23])
    y = (np.arange(44) % 3 == 0).astype(int)
    curve = pf.calibration_curve(y, risk, n_bins=4, min_cell_size=11).table
    assert curve["n"].min() >= 11 and curve["n"].sum() == 44
