"""Bad input from the issue: a single group, missing values, a group with one outcome class,
a period without labels -> a stated status and note, never an exception. Mistakes in
settings or arguments -> ValueError naming the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinval import fairness
from clinval.fairness import OVERALL_GROUP, UNKNOWN, FairnessSettings

SETTINGS = FairnessSettings(threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8)
UNSUPPRESSED = FairnessSettings(threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8, min_cell_size=1)
"""The statistics of a small group, not their publication (which min_cell_size governs)."""
BANDS = {"age": [35, 50, 60, 70]}


def make_log(n: int = 400, *, seed: int = 0, period: str = "1990") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    risk = np.clip(rng.beta(2, 5, n), 0.01, 0.99)
    return pd.DataFrame({
        "record_id": [f"{period}-{i}" for i in range(n)],
        "period": period,
        "label": pd.array((rng.random(n) < risk).astype(int), dtype="Int64"),
        "predicted_risk": risk,
        "sex": rng.choice(["m", "f"], n, p=[0.6, 0.4]),
        "age": rng.integers(35, 70, n).astype(float),
    })


def audit(log: pd.DataFrame, **kw) -> fairness.FairnessAudit:
    return fairness.audit_over_time(log, attributes=["sex", "age"], bands=BANDS, settings=kw.pop("settings", SETTINGS), **kw)


def test_single_group_is_stated_not_an_error():
    log = make_log()
    log["sex"] = "m"
    result = audit(log)
    disp = result.disparity_table(period="1990", attribute="sex")
    assert len(disp) == 1
    row = disp.iloc[0]
    assert row["metric"] == "all" and not row["flagged"]
    assert row["status"] == "not computed: sex has a single group (m) here, so there is nothing to compare"
    assert "nothing to compare" in row["sentence"]
    assert any("single group (m)" in n for n in result.notes["note"])
    # the group table is still there
    table = result.group_table(period="1990", attribute="sex")
    assert set(table["group"]) == {OVERALL_GROUP, "m"}


def test_missing_values_form_an_unknown_group_and_are_noted():
    log = make_log(600)
    log.loc[log.index[:40], "sex"] = None
    log.loc[log.index[40:70], "age"] = np.nan
    result = audit(log)
    sex = result.group_table(period="1990", attribute="sex")
    assert UNKNOWN in set(sex["group"])
    unknown = sex[(sex["group"] == UNKNOWN) & (sex["metric"] == "auroc")].iloc[0]
    assert unknown["n"] == 40 and unknown["status"] == "ok"
    assert result.reference_groups["sex"] == "m"  # never "unknown"
    notes = " ".join(result.notes["note"])
    assert 'Missing values of sex are counted as their own group, "unknown".' in notes
    assert 'Missing values of age band are counted' in notes
    assert UNKNOWN in set(result.group_table(period="1990", attribute="age_band")["group"])


def test_largest_group_unknown_is_not_the_reference():
    log = make_log(300)
    log.loc[log.index[:200], "sex"] = None
    table = fairness.disparities(log, attribute="sex", settings=SETTINGS)
    assert set(table["reference_group"]) == {"m"}


def test_group_with_one_outcome_class_publishes_no_outcome_metric():
    """Issue 12: "sex f has no events" told every reader that no woman died. A group whose
    events (or non-events) are fewer than min_cell_size, zero included, shows no metric
    computed from them, and no note or status says how many there were."""
    log = make_log(600, seed=3)
    log.loc[log["sex"] == "f", "label"] = 0  # no deaths among women
    result = audit(log)
    table = result.group_table(period="1990", attribute="sex")
    women = table[table["group"] == "f"].set_index("metric")
    for metric in ["prevalence", "auroc", "sensitivity", "calibration_slope", "observed_expected"]:
        assert women.loc[metric, "status"].startswith("suppressed"), metric
        assert np.isnan(women.loc[metric, "value"])
    men = table[table["group"] == "m"].set_index("metric")  # men's events = all events: recoverable, so hidden too
    assert men.loc["prevalence", "status"].startswith("suppressed")
    text = " ".join(result.notes["note"]) + " ".join(result.disparities["sentence"]) + " ".join(result.groups["status"])
    assert "no events" not in text and "one outcome class" not in text


def test_group_with_one_outcome_class_gets_statuses_and_a_note_without_suppression():
    log = make_log(600, seed=3)
    log.loc[log["sex"] == "f", "label"] = 0  # no deaths among women
    result = audit(log, settings=UNSUPPRESSED)
    table = result.group_table(period="1990", attribute="sex")
    women = table[table["group"] == "f"].set_index("metric")
    assert women.loc["sensitivity", "status"].startswith("insufficient data: no events")
    assert women.loc["auroc", "status"].startswith("insufficient data: only one outcome class")
    assert women.loc["calibration_slope", "status"].startswith("insufficient data")
    # no event where the model expects some is evidence of miscalibration, not a gap: O/E 0, exact Poisson bound
    assert women.loc["observed_expected", "status"] == "ok" and women.loc["observed_expected", "value"] == 0
    assert 0 < women.loc["observed_expected", "upper"] < 1
    for metric in ["false_positive_rate", "selection_rate", "prevalence"]:
        assert women.loc[metric, "status"] == "ok"
    assert women.loc["prevalence", "value"] == 0
    disp = result.disparity_table(period="1990", attribute="sex")
    sens = disp[(disp["group"] == "f") & (disp["metric"] == "sensitivity")]
    assert sens["status"].str.startswith("not computed: sensitivity for sex f: no events").all()
    assert any("sex f has no events" in n for n in result.notes["note"])


def test_group_with_only_events():
    log = make_log(600, seed=4)
    log.loc[log["sex"] == "f", "label"] = 1
    table = fairness.group_metrics(log, attribute="sex", settings=UNSUPPRESSED)
    women = table[table["group"] == "f"].set_index("metric")
    assert women.loc["false_positive_rate", "status"].startswith("insufficient data: no non-events")
    assert women.loc["sensitivity", "status"] == "ok"


def test_few_events_give_a_wide_interval_never_a_point():
    log = make_log(800, seed=5)
    women = log["sex"] == "f"
    log.loc[women, "label"] = 0
    log.loc[log.index[women][:2], "label"] = 1
    published = fairness.group_metrics(log, attribute="sex", settings=SETTINGS)
    assert published[(published["group"] == "f") & (published["metric"] == "sensitivity")]["value"].isna().all()
    table = fairness.group_metrics(log, attribute="sex", settings=UNSUPPRESSED)
    row = table[(table["group"] == "f") & (table["metric"] == "sensitivity")].iloc[0]
    caught = int(((log.loc[women, "predicted_risk"] >= SETTINGS.threshold) & (log.loc[women, "label"] == 1)).sum())
    assert row["value"] == caught / 2 and row["status"] == "ok"
    # Wilson's interval for k of 2 events: about 0.09 to 0.91 at k = 1, 0 to 0.66 at k = 0, 0.34 to 1 at k = 2
    expected = {0: (0.0, 0.6576), 1: (0.0945, 0.9055), 2: (0.3424, 1.0)}[caught]
    assert (row["lower"], row["upper"]) == pytest.approx(expected, abs=1e-4)


def test_period_without_labels_among_labelled_periods():
    log = pd.concat([make_log(400, seed=1, period="reference"), make_log(300, seed=2, period="1993")], ignore_index=True)
    log.loc[log["period"] == "1993", "label"] = pd.NA
    result = audit(log)
    assert result.periods == ("reference", "1993")
    late = result.group_table(period="1993", attribute="age_band")
    assert (late[late["metric"] == "auroc"]["status"] == fairness.LABELS_NOT_AVAILABLE).all()
    assert late[late["metric"] == "selection_rate"]["status"].eq("ok").all()


def test_records_without_prediction_are_left_out():
    log = make_log(300)
    log.loc[log.index[:5], "predicted_risk"] = np.nan
    table = fairness.group_metrics(log, attribute="sex", settings=SETTINGS)
    assert table[table["group"] == OVERALL_GROUP]["n"].iloc[0] == 295


def test_reference_group_absent_from_a_period_is_stated():
    log = pd.concat([make_log(400, seed=1, period="reference"), make_log(300, seed=2, period="1993")], ignore_index=True)
    log.loc[(log["period"] == "1993") & (log["sex"] == "m"), "sex"] = "x"
    result = audit(log)
    disp = result.disparity_table(period="1993", attribute="sex")
    assert disp["status"].str.contains("reference group sex m has no patients here").all()
    assert not disp["flagged"].any()


# ---------------------------------------------------------------------------- mistakes


@pytest.mark.parametrize(("field", "value", "message"), [
    ("threshold", 1.5, "threshold must be strictly between 0 and 1"),
    ("tolerance_ratio", 1.2, "tolerance_ratio must be in"),
    ("min_cell_size", 0, "min_cell_size must be a positive integer"),
    ("confidence", 95, "confidence must be strictly between 0 and 1"),
    ("flag_metrics", ("accuracy",), "unknown metric"),
])
def test_bad_settings_are_named(field, value, message):
    base = dict(threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8)
    with pytest.raises(ValueError, match=message):
        FairnessSettings(**(base | {field: value}))


def test_settings_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        FairnessSettings(0.3, 0.1, 0.8)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        SETTINGS.threshold = 0.5  # type: ignore[misc]


def test_mistakes_in_arguments_are_named():
    log = make_log(100)
    with pytest.raises(ValueError, match="no column 'age_band'"):
        fairness.group_metrics(log, attribute="age_band", settings=SETTINGS)
    with pytest.raises(ValueError, match=r"needs columns \['predicted_risk'\]"):
        fairness.group_metrics(log.drop(columns="predicted_risk"), attribute="sex", settings=SETTINGS)
    with pytest.raises(ValueError, match="reference group 'w' of 'sex' does not occur"):
        audit(log, settings=FairnessSettings(threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8,
                                              reference_group={"sex": "w"}))
    with pytest.raises(ValueError, match="not audited attributes"):
        audit(log, settings=FairnessSettings(threshold=0.3, tolerance_difference=0.1, tolerance_ratio=0.8,
                                              reference_group={"age": "35-49"}))
    with pytest.raises(ValueError, match="periods \\['2001'\\] do not occur"):
        audit(log, periods=["2001"])
    with pytest.raises(ValueError, match="no rows"):
        audit(log.iloc[:0])


@pytest.mark.parametrize(("column", "values", "message"), [
    ("label", [0, 2], r"'label' must hold 0, 1 or missing; found \['2'\]"),
    ("label", ["dead", "alive"], "'label' must hold 0, 1 or missing"),
    ("predicted_risk", [0.2, 1.7], r"'predicted_risk' must lie in \[0, 1\]"),
])
def test_impossible_values_are_named(column, values, message):
    log = make_log(2)
    log[column] = values
    with pytest.raises(ValueError, match=message):
        fairness.group_metrics(log, attribute="sex", settings=SETTINGS)
