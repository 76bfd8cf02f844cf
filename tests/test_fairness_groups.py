"""Group metrics: bands, group columns, and known answers per group (the audit's per-group
cells equal fairlearn MetricFrame's; point estimates against direct sklearn / statsmodels
computations; each interval against the method it states)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.metrics import confusion_matrix, precision_score, recall_score, roc_auc_score

from clinval import fairness
from clinval.fairness import OVERALL_GROUP, UNKNOWN, FairnessSettings


def simulate(sizes: dict[str, int], *, seed: int = 0, period: str = "1990") -> pd.DataFrame:
    """A calibrated model: outcome ~ Bernoulli(risk)."""
    rng = np.random.default_rng(seed)
    parts = []
    for group, n in sizes.items():
        risk = np.clip(rng.beta(2, 5, n), 0.01, 0.99)
        y = (rng.random(n) < risk).astype(int)
        parts.append(pd.DataFrame({"sex": group, "predicted_risk": risk, "label": y}))
    log = pd.concat(parts, ignore_index=True)
    log["label"] = log["label"].astype("Int64")
    log["period"] = period
    log["record_id"] = [f"r{i}" for i in range(len(log))]
    return log


SETTINGS = FairnessSettings(threshold=0.3, tolerance_difference=0.10, tolerance_ratio=0.8)


def _value(table: pd.DataFrame, group: str, metric: str, column: str = "value") -> float:
    row = table[(table["group"] == group) & (table["metric"] == metric)]
    assert len(row) == 1, (group, metric)
    return row[column].iloc[0]


# ---------------------------------------------------------------------------- bands and groups


def test_band_labels_edges_outside_values_and_missing():
    ages = pd.Series([35, 44, 45, 69, 70, 30, np.nan], name="age")
    banded = fairness.band(ages, edges=[35, 45, 55, 65, 70])
    assert list(banded.astype(str)) == ["35-44", "35-44", "45-54", "65-69", "70+", "<35", UNKNOWN]
    assert list(banded.cat.categories) == ["<35", "35-44", "45-54", "55-64", "65-69", "70+", UNKNOWN]
    named = fairness.band(ages, edges=[0, 50, 100], labels=["young", "old"])
    assert list(named.astype(str)) == ["young", "young", "young", "old", "old", "young", UNKNOWN]
    assert list(fairness.band([1.5, 2.5], edges=[1.0, 2.0, 3.5]).astype(str)) == ["1 to <2", "2 to <3.5"]


@pytest.mark.parametrize(("edges", "labels"), [([35], None), ([35, 35, 40], None), ([35, 45, 55], ["a"])])
def test_band_rejects_bad_edges_and_labels(edges, labels):
    with pytest.raises(ValueError, match="band"):
        fairness.band([40, 50], edges=edges, labels=labels)


def test_band_rejects_text():
    with pytest.raises(ValueError, match="not numeric"):
        fairness.band(pd.Series(["forty"], name="age"), edges=[0, 50])


def test_sensitive_frame_bands_fills_unknown_and_intersects():
    log = pd.DataFrame({"sex": ["m", "f", None, "f"], "age": [40, 60, np.nan, 66]})
    groups = fairness.sensitive_frame(log, attributes=["sex", "age"], bands={"age": [35, 45, 55, 65, 70]})
    assert list(groups.columns) == ["sex", "age_band", "sex × age_band"]
    assert list(groups["sex"].astype(str)) == ["m", "f", UNKNOWN, "f"]
    assert list(groups["sex × age_band"].astype(str)) == ["m × 35-44", "f × 55-64", "unknown × unknown", "f × 65-69"]
    assert groups.index.equals(log.index)


def test_sensitive_frame_names_the_missing_column():
    with pytest.raises(ValueError, match="no column 'race'"):
        fairness.sensitive_frame(pd.DataFrame({"sex": ["m"]}), attributes=["race"], bands={})


# ---------------------------------------------------------------------------- known answers


@pytest.fixture(scope="module")
def two_groups() -> tuple[pd.DataFrame, pd.DataFrame]:
    log = simulate({"m": 500, "f": 350}, seed=3)
    return log, fairness.group_metrics(log, attribute="sex", settings=SETTINGS)


def test_table_shape_and_columns(two_groups):
    _, table = two_groups
    assert list(table.columns) == ["attribute", "group", "n", "suppressed", "metric", "value", "lower", "upper", "status"]
    assert list(dict.fromkeys(table["group"])) == [OVERALL_GROUP, "f", "m"]
    assert len(table) == 3 * len(fairness.METRICS)
    assert (table["status"] == "ok").all()
    assert _value(table, "m", "prevalence", "n") == 500 and _value(table, OVERALL_GROUP, "auroc", "n") == 850


def test_metricframe_results_match_direct_computation_per_group(two_groups):
    log, table = two_groups
    for group in ["f", "m", OVERALL_GROUP]:
        part = log if group == OVERALL_GROUP else log[log["sex"] == group]
        y = part["label"].astype(int).to_numpy()
        risk = part["predicted_risk"].to_numpy()
        pred = (risk >= SETTINGS.threshold).astype(int)
        tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
        glm = sm.GLM(y, sm.add_constant(np.log(risk / (1 - risk))), family=sm.families.Binomial()).fit()
        expected = {
            "prevalence": y.mean(),
            "auroc": roc_auc_score(y, risk),
            "sensitivity": recall_score(y, pred),
            "false_positive_rate": fp / (fp + tn),
            "ppv": precision_score(y, pred),
            "selection_rate": pred.mean(),
            "observed_expected": y.sum() / risk.sum(),
            "calibration_slope": glm.params[1],
        }
        for metric, value in expected.items():
            assert _value(table, group, metric) == pytest.approx(value, rel=1e-9, abs=1e-12), (group, metric)


def test_intervals_contain_the_point_and_are_proper(two_groups):
    _, table = two_groups
    assert (table["lower"] <= table["value"] + 1e-12).all()
    assert (table["value"] <= table["upper"] + 1e-12).all()
    assert (table["lower"] < table["upper"]).all()


def test_group_intervals_are_the_stated_methods(two_groups):
    """Wilson for rates (statsmodels), Newcombe's score interval for AUROC, the delta method
    for O/E and the Wald interval for the slope (statsmodels GLM), group by group."""
    from statsmodels.stats.proportion import proportion_confint

    from clinval import intervals, performance

    log, table = two_groups
    for group in ["f", "m", OVERALL_GROUP]:
        part = log if group == OVERALL_GROUP else log[log["sex"] == group]
        y = part["label"].astype(int).to_numpy()
        risk = part["predicted_risk"].to_numpy()
        pred = risk >= SETTINGS.threshold
        counts = {"prevalence": (y.sum(), y.size), "sensitivity": ((pred & (y == 1)).sum(), (y == 1).sum()),
                  "false_positive_rate": ((pred & (y == 0)).sum(), (y == 0).sum()),
                  "ppv": ((pred & (y == 1)).sum(), pred.sum()), "selection_rate": (pred.sum(), pred.size)}
        for metric, (k, n) in counts.items():
            low, high = proportion_confint(k, n, method="wilson")
            assert _value(table, group, metric, "lower") == pytest.approx(low, abs=1e-12), (group, metric)
            assert _value(table, group, metric, "upper") == pytest.approx(high, abs=1e-12), (group, metric)
        auc = roc_auc_score(y, risk)
        low, high = intervals.auroc_interval(auc, n_events=int(y.sum()), n_non_events=int((1 - y).sum()))
        assert (_value(table, group, "auroc", "lower"), _value(table, group, "auroc", "upper")) == pytest.approx((low, high))
        oe = performance.observed_expected(y, risk)
        assert _value(table, group, "observed_expected", "lower") == pytest.approx(oe.lower)
        glm = sm.GLM(y, sm.add_constant(np.log(risk / (1 - risk))), family=sm.families.Binomial()).fit()
        assert _value(table, group, "calibration_slope", "lower") == pytest.approx(glm.conf_int()[1][0])


def test_same_data_same_intervals_whatever_the_row_order(two_groups):
    log, table = two_groups
    again = fairness.group_metrics(log.iloc[::-1], attribute="sex", settings=SETTINGS)
    pd.testing.assert_frame_equal(table, again)


def test_confidence_setting_reaches_every_interval(two_groups):
    log, table = two_groups
    wider = fairness.group_metrics(log, attribute="sex", settings=FairnessSettings(
        threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8, confidence=0.99))
    assert ((wider["upper"] - wider["lower"]) > (table["upper"] - table["lower"])).all()


def test_period_without_labels_keeps_the_selection_rate():
    log = simulate({"m": 200, "f": 150}, seed=5)
    log["label"] = pd.array([pd.NA] * len(log), dtype="Int64")
    table = fairness.group_metrics(log, attribute="sex", settings=SETTINGS)
    selection = table[table["metric"] == "selection_rate"]
    assert (selection["status"] == "ok").all() and selection["value"].notna().all()
    rest = table[table["metric"] != "selection_rate"]
    assert (rest["status"] == fairness.LABELS_NOT_AVAILABLE).all()
    assert rest["value"].isna().all()


def test_partly_labelled_group_uses_labelled_patients_only():
    log = simulate({"m": 300, "f": 300}, seed=6)
    full = fairness.group_metrics(log, attribute="sex", settings=SETTINGS)
    hidden_labels = log.copy()
    unlabelled = hidden_labels.sample(frac=0.3, random_state=1).index
    hidden_labels.loc[unlabelled, "label"] = pd.NA
    part = fairness.group_metrics(hidden_labels, attribute="sex", settings=SETTINGS)
    labelled = log.drop(index=unlabelled)
    assert _value(part, "f", "selection_rate") == _value(full, "f", "selection_rate")
    f = labelled[labelled["sex"] == "f"]
    assert _value(part, "f", "auroc") == pytest.approx(roc_auc_score(f["label"].astype(int), f["predicted_risk"]))
    assert _value(part, "f", "auroc", "n") == 300


def test_monica_prediction_log(monica, locked_model):
    """The real prediction log (string dtypes, Int64 labels): runs, and JSON-safe."""
    import json

    from clinval import model

    log = model.prediction_log(monica, *locked_model)
    settings = FairnessSettings(threshold=0.2, tolerance_difference=0.1, tolerance_ratio=0.8)
    audit = fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": [35, 45, 55, 65, 70]},
                                     settings=settings, periods=["reference", "1993"])
    assert audit.attributes == ("sex", "age_band", "sex × age_band")
    assert audit.reference_groups == {"sex": "m", "age_band": "55-64", "sex × age_band": "m × 55-64"}
    sex = audit.group_table(period="1993", attribute="sex")
    assert sex[sex["metric"] == "auroc"]["status"].eq("ok").all()
    json.dumps(fairness.to_json(audit), allow_nan=False)


def test_the_audit_computes_exactly_the_cells_of_fairlearns_metricframe(monkeypatch):
    """The audit calls each metric per group itself (MetricFrame's per-row np.stack is
    most of its time on large logs); fairlearn's MetricFrame on the same arrays is the
    reference, cell by cell, including unlabelled patients, a one-class group and a
    group of three."""
    from fairlearn.metrics import MetricFrame

    from clinval import fairness_metrics, memo

    monkeypatch.setenv(memo.MEMO_ENV, "off")
    log = simulate({"m": 400, "f": 300, "x": 3}, seed=4)
    rng = np.random.default_rng(5)
    y = log["label"].to_numpy(dtype=float, na_value=np.nan)
    y[rng.random(y.size) < 0.1] = np.nan  # labels not yet known
    y[(log["sex"] == "x").to_numpy()] = 0.0  # no events in that group
    risk = log["predicted_risk"].to_numpy()
    decision = risk >= 0.3
    groups = log["sex"].astype(str).rename("sex")
    ours = fairness_metrics.group_estimates(y, risk, decision, groups, 0.9)
    reference = fairness_metrics._metric_frame(y, risk, decision, groups, 0.9)
    assert isinstance(reference, MetricFrame)
    expected = {OVERALL_GROUP: reference.overall, **{g: reference.by_group.loc[g] for g in reference.by_group.index}}
    assert set(ours) == set(expected)
    for g, cells in expected.items():
        for metric in fairness.METRICS:
            a, b = ours[g][metric], cells[metric]
            assert (a.metric, a.method, a.n, a.status) == (b.metric, b.method, b.n, b.status), (g, metric)
            for x, z in ((a.value, b.value), (a.lower, b.lower), (a.upper, b.upper)):
                assert (np.isnan(x) and np.isnan(z)) or x == z, (g, metric, a, b)
