"""The change control plan: parsing, triggers, refusals and acceptance criteria."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clinval import pccp
from clinval.performance import Estimate, PairedDifference
from studies import monica_params

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = monica_params("pccp")  # MONICA's plan, pinned (params/ may name another study)


def _plan(**changes):
    params = copy.deepcopy(SHIPPED)
    for dotted, value in changes.items():
        target = params
        *path, last = dotted.split(".")
        for key in path:
            target = target[key]
        target[last] = value
    return pccp.plan_from_params(params)


def test_the_shipped_plan_parses():
    plan = pccp.plan_from_params(SHIPPED)
    assert set(plan.modifications) == {"recalibration", "refit"}
    assert plan.triggers["calibration_drift"].bounds == (0.8, 1.25)
    assert plan.sequestered_periods == ("1993",)


@pytest.mark.parametrize(("change", "words"), [
    ({"acceptance_criteria.auroc_noninferority": {"margin": 0.02}}, "unknown acceptance criterion 'auroc_noninferority'"),
    ({"data_management.sequestered_periods": ["1992"]}, "both training and sequestered"),
    ({"triggers.calibration_drift.rule": "ci_wobbles"}, "rule is 'ci_wobbles'"),
    ({"triggers.calibration_drift.modification": "rewrite"}, "not one of the plan's modifications"),
    ({"modifications.refit.approval": "nobody"}, "approval is 'nobody'"),
])
def test_a_malformed_plan_is_refused_naming_the_key(change, words):
    with pytest.raises(pccp.PlanError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _plan(**change)


def _log() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    periods = np.repeat(["reference", "2001", "2002"], 200)
    return pd.DataFrame({"record_id": [str(i) for i in range(600)], "period": periods,
                         "label": rng.integers(0, 2, 600), "predicted_risk": rng.random(600)})


def _performance(oe: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    rows = [{"period": p, "metric": "O/E", "value": v, "lower": lo, "upper": hi, "n": 200, "status": "ok"} for p, (v, lo, hi) in oe.items()]
    return pd.DataFrame(rows)


def test_the_calibration_trigger_needs_both_the_bound_and_the_interval():
    plan = pccp.plan_from_params(SHIPPED)
    log = _log()
    performance = _performance({"2001": (0.75, 0.60, 0.95), "2002": (0.75, 0.55, 1.02)})
    drift = pd.DataFrame({"period": ["2001"], "feature": ["age"], "drifted": [False]})
    alerts = pccp.drift_alerts(plan.triggers, log=log, performance=performance, reference_performance=pd.DataFrame(
        [{"metric": "AUROC", "value": 0.7, "status": "ok"}]), drift=drift)
    assert [(a.trigger, a.period) for a in alerts] == [("calibration_drift", "2001")]
    assert alerts[0].modification == "recalibration" and alerts[0].n_records == 200
    assert "over-predicts" in alerts[0].summary


def test_the_data_quality_trigger_fires_on_missing_rates_and_new_categories_only():
    plan = pccp.plan_from_params(SHIPPED)
    assert plan.triggers["data_quality_drift"].modification is None  # a person reviews the feed
    drift = pd.DataFrame({
        "period": ["2001", "2001", "2002", "2002"], "feature": ["age", "site", "age", "site"],
        "drifted": [False, False, True, False], "missing_drifted": [True, False, False, False],
        "new_level_drifted": [False, True, False, False], "missing_rate_reference": [0.30, 0.0, 0.30, 0.0],
        "missing_rate_current": [0.45, 0.0, 0.31, 0.0], "unseen_categories": [0, 1, 0, 0], "unseen_rate": [0.0, 0.01, 0.0, 0.0],
    })
    calibrated = _performance({"2001": (1.0, 0.9, 1.1), "2002": (1.0, 0.9, 1.1)})
    alerts = pccp.drift_alerts(plan.triggers, log=_log(), performance=calibrated, reference_performance=pd.DataFrame(
        [{"metric": "AUROC", "value": 0.7, "status": "ok"}]), drift=drift)
    quality = [a for a in alerts if a.trigger == "data_quality_drift"]
    assert [a.period for a in quality] == ["2001"]
    assert "missing rate of age went from 30.0% to 45.0%" in quality[0].summary
    assert "site shows 1 category unseen in the reference (1.0% of values)" in quality[0].summary
    assert quality[0].evidence == {"missing_rate_changed": ["age"], "new_categories": ["site"]}


def test_alert_ids_are_stable_for_the_same_data_and_change_with_it():
    log = _log()
    frame = log[log["period"] == "2001"]
    first = pccp.alert_id("calibration_drift", "2001", pccp.period_digest(frame))
    assert first == pccp.alert_id("calibration_drift", "2001", pccp.period_digest(frame.sample(frac=1, random_state=1)))
    changed = frame.assign(label=1 - frame["label"])
    assert first != pccp.alert_id("calibration_drift", "2001", pccp.period_digest(changed))


def test_alert_ids_survive_last_bit_differences_of_another_cpu_but_not_a_new_model():
    frame = _log().query("period == '2001'")
    first = pccp.alert_id("calibration_drift", "2001", pccp.period_digest(frame))
    last_bits = frame.assign(predicted_risk=frame["predicted_risk"] * (1 + 4e-15))
    assert (last_bits["predicted_risk"] != frame["predicted_risk"]).any()
    assert first == pccp.alert_id("calibration_drift", "2001", pccp.period_digest(last_bits))
    new_model = frame.assign(predicted_risk=frame["predicted_risk"] * 1.001)
    assert first != pccp.alert_id("calibration_drift", "2001", pccp.period_digest(new_model))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"modification": "rewrite"}, "not allowed by the change control plan"),
    ({"features": ["age", "sex"]}, "locks the feature list"),
    ({"model_family": "gradient_boosting"}, "locks the model family"),
    ({"training_periods": ["1992", "1993"]}, "sequestered"),
    ({"training_periods": ["1990"]}, "not among the plan's training periods"),
])
def test_a_modification_the_plan_does_not_allow_is_refused(kwargs, words):
    plan = pccp.plan_from_params(SHIPPED)
    call = {"modification": "recalibration", "features": list(plan.locked_features),
            "model_family": plan.locked_model_family, "training_periods": ["1991"]} | kwargs
    with pytest.raises(pccp.ModificationRefused, match=words):
        pccp.check_modification(plan, **call)


def _estimate(value, lower, upper, metric="x"):
    return Estimate(metric=metric, value=value, lower=lower, upper=upper, method="test", n=100)


def _difference(d, lo, hi, status="ok"):
    return PairedDifference(d, lo, hi, 0.5, 0.7, 0.7, 100, status=status)


def test_criteria_pass_and_fail_on_their_stated_bounds():
    plan = pccp.plan_from_params(SHIPPED)
    passing = pccp.evaluate_criteria(plan, auroc_difference=_difference(0.0, -0.01, 0.01),
                                     calibration_slope=_estimate(1.05, 0.85, 1.25), observed_expected=_estimate(0.98, 0.85, 1.12),
                                     subgroup_differences={"sex f": _difference(0.0, -0.03, 0.03)})
    assert all(c.passed for c in passing)
    failing = pccp.evaluate_criteria(plan, auroc_difference=_difference(-0.03, -0.05, -0.01),
                                     calibration_slope=_estimate(1.3, 1.1, 1.5), observed_expected=_estimate(0.7, 0.6, 0.9),
                                     subgroup_differences={"sex f": _difference(-0.1, -0.15, -0.06)})
    assert not any(c.passed for c in failing)


def test_a_subgroup_criterion_with_no_estimable_group_fails():
    plan = pccp.plan_from_params(SHIPPED)
    nan = math.nan
    results = pccp.evaluate_criteria(plan, auroc_difference=_difference(0.0, -0.01, 0.01),
                                     calibration_slope=_estimate(1.0, 0.8, 1.2), observed_expected=_estimate(1.0, 0.9, 1.1),
                                     subgroup_differences={"sex f": _difference(nan, nan, nan, status="insufficient data: one class")})
    assert {c.criterion: c.passed for c in results}["subgroup AUROC"] is False


@pytest.mark.parametrize(("waiver", "passed"), [(False, False), (True, True), (["age_band 80+"], True), (["age_band 70-79"], False)])
def test_a_group_that_cannot_be_judged_fails_the_subgroup_criterion_unless_the_plan_waives_it(waiver, passed):
    params = copy.deepcopy(SHIPPED)
    params["acceptance_criteria"]["subgroup_auroc"]["waive_not_estimable"] = waiver
    plan = pccp.plan_from_params(params)
    nan = math.nan
    results = pccp.evaluate_criteria(
        plan, auroc_difference=_difference(0.0, -0.01, 0.01), calibration_slope=_estimate(1.0, 0.8, 1.2),
        observed_expected=_estimate(1.0, 0.9, 1.1),
        subgroup_differences={"sex f": _difference(0.0, -0.03, 0.03),
                              "age_band 80+": _difference(nan, nan, nan, status="insufficient data: one class")})
    subgroup = next(c for c in results if c.criterion == "subgroup AUROC")
    assert subgroup.passed is passed
    assert ("waives: age_band 80+" in subgroup.requirement) is passed


def test_the_plan_is_checked_against_the_study():
    plan = pccp.plan_from_params(SHIPPED)
    features = list(plan.locked_features)
    assert pccp.plan_fits_study(plan, features=features[::-1], periods=["1990", "1991", "1992", "1993"]) == []
    problems = pccp.plan_fits_study(plan, features=[*features[1:], "creatinine"], periods=["2021", "2022"])
    assert len(problems) == 3 and "['age'] locked but not in the study" in problems[0]
    assert "['creatinine'] in the study but not locked" in problems[0]


def test_an_automatic_modification_is_built_without_a_person(monica, locked_model):
    from clinval import model, revalidation

    pipeline, card = locked_model
    log = model.prediction_log(monica, pipeline, card)
    plan = _plan(**{"modifications.recalibration.approval": "automatic"})
    alert = {"id": "calibration_drift-1991-x", "modification": "recalibration", "period": "1991"}
    built, refusals = revalidation.build_candidates(approvals=[], current_alerts=[alert], plan=plan, log=log,
                                                    locked=pipeline, card=card, schema=monica.schema)
    assert refusals == [] and len(built) == 1
    candidate, fitted = built[0]
    assert candidate.approved_by == ("automatic (per plan)",) and candidate.alert_ids == (alert["id"],)
    # with approval by a person required, nothing is built for an unapproved alert
    built, _ = revalidation.build_candidates(approvals=[], current_alerts=[alert], plan=pccp.plan_from_params(SHIPPED),
                                             log=log, locked=pipeline, card=card, schema=monica.schema)
    assert built == []


def test_a_plan_for_other_features_builds_nothing_and_says_why(monica, locked_model):
    from clinval import model, revalidation

    pipeline, card = locked_model
    log = model.prediction_log(monica, pipeline, card)
    plan = _plan(**{"locked.features": ["age", "sex"], "modifications.recalibration.approval": "automatic"})
    alert = {"id": "calibration_drift-1991-x", "modification": "recalibration", "period": "1991"}
    built, refusals = revalidation.build_candidates(approvals=[], current_alerts=[alert], plan=plan, log=log,
                                                    locked=pipeline, card=card, schema=monica.schema)
    assert built == [] and "locks the feature list" in refusals[0]["reason"]
