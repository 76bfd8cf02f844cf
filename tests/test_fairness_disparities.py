"""Disparities: known injected gaps are flagged, no gap is flagged at the nominal rate,
the gap opening over time shows in the audit, its JSON and its plots."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import equalized_odds_difference
from matplotlib.figure import Figure

from clinval import fairness
from clinval.fairness import EQUALIZED_ODDS, FairnessSettings
from clinval.plots import fairness as fairness_plots


def simulate(sizes: dict[str, int], *, seed: int, period: str = "1990", miss_events: dict[str, float] | None = None,
             ages: bool = False) -> pd.DataFrame:
    """A calibrated model; ``miss_events[g]`` halves the risk of that share of group g's
    events, which lowers the group's sensitivity at the threshold."""
    rng = np.random.default_rng(seed)
    parts = []
    for group, n in sizes.items():
        risk = np.clip(rng.beta(2, 5, n), 0.01, 0.99)
        y = (rng.random(n) < risk).astype(int)
        share = (miss_events or {}).get(group, 0.0)
        hit = (y == 1) & (rng.random(n) < share)
        risk[hit] = risk[hit] * 0.3
        parts.append(pd.DataFrame({"sex": group, "predicted_risk": risk, "label": y}))
    log = pd.concat(parts, ignore_index=True)
    log["label"] = log["label"].astype("Int64")
    log["period"] = period
    log["record_id"] = [f"{period}-{i:05d}" for i in range(len(log))]
    if ages:
        log["age"] = rng.integers(35, 70, len(log)).astype(float)
    return log


def make_settings(**changes) -> FairnessSettings:
    base = dict(threshold=0.3, tolerance_difference=0.10, tolerance_ratio=0.8)
    return FairnessSettings(**(base | changes))


def _row(table: pd.DataFrame, group: str, metric: str, measure: str = "difference") -> pd.Series:
    rows = table[(table["group"] == group) & (table["metric"] == metric) & (table["measure"] == measure)]
    assert len(rows) == 1, (group, metric, measure)
    return rows.iloc[0]


def test_injected_sensitivity_gap_is_flagged_with_a_plain_sentence():
    log = simulate({"m": 600, "f": 500}, seed=1, miss_events={"f": 0.6})
    table = fairness.disparities(log, attribute="sex", settings=make_settings())
    row = _row(table, "f", "sensitivity")
    assert row["reference_group"] == "m"  # the largest group by default
    assert row["value"] < -0.2 and row["upper"] < -0.10
    assert row["flagged"] and row["status"] == "ok"
    assert row["sentence"].startswith("Sensitivity for sex f is")
    assert "lower than for sex m" in row["sentence"] and "beyond the 0.10 tolerance" in row["sentence"]
    assert "95% CI" in row["sentence"]
    ratio = _row(table, "f", "sensitivity", "ratio")
    assert ratio["flagged"] and ratio["upper"] < 0.8
    eod = _row(table, "f", EQUALIZED_ODDS)
    assert eod["flagged"] and eod["value"] >= abs(row["value"]) - 1e-12


def test_disparity_table_shape():
    log = simulate({"m": 300, "f": 250, "x": 200}, seed=2)
    table = fairness.disparities(log, attribute="sex", settings=make_settings())
    assert list(table.columns) == ["attribute", "group", "reference_group", "metric", "measure", "value", "lower",
                                   "upper", "tolerance", "flagged", "status", "sentence"]
    per_group = 2 * len(fairness.METRICS) + 1
    assert len(table) == 2 * per_group and set(table["group"]) == {"f", "x"}
    assert (table["sentence"].str.len() > 20).all()


def test_differences_are_group_minus_reference_and_eod_matches_fairlearn():
    log = simulate({"m": 400, "f": 300}, seed=4, miss_events={"f": 0.2})
    settings = make_settings()
    groups = fairness.group_metrics(log, attribute="sex", settings=settings)
    table = fairness.disparities(log, attribute="sex", settings=settings)

    def value(group, metric):
        return groups[(groups["group"] == group) & (groups["metric"] == metric)]["value"].iloc[0]

    for metric in fairness.METRICS:
        assert _row(table, "f", metric)["value"] == pytest.approx(value("f", metric) - value("m", metric))
        assert _row(table, "f", metric, "ratio")["value"] == pytest.approx(value("f", metric) / value("m", metric))
    y = log["label"].astype(int)
    pred = (log["predicted_risk"] >= settings.threshold).astype(int)
    expected = equalized_odds_difference(y, pred, sensitive_features=log["sex"])
    assert _row(table, "f", EQUALIZED_ODDS)["value"] == pytest.approx(expected)


def test_reference_group_from_settings():
    log = simulate({"m": 300, "f": 250}, seed=5)
    table = fairness.disparities(log, attribute="sex", settings=make_settings(reference_group={"sex": "f"}))
    assert set(table["group"]) == {"m"} and set(table["reference_group"]) == {"f"}


def test_no_gap_is_flagged_at_most_at_the_nominal_rate():
    """Two identical groups: with tolerance 0 a flag means "CI excludes 0", which a 95%
    interval does about 5% of the time; with the 0.10 tolerance hardly ever."""
    seeds = range(20)
    strict, tolerant = 0, 0
    for seed in seeds:
        log = simulate({"m": 260, "f": 250}, seed=100 + seed)
        table = fairness.disparities(log, attribute="sex", settings=make_settings(
            tolerance_difference=0.0, flag_metrics=("sensitivity",)))
        row = _row(table, "f", "sensitivity")
        strict += bool(row["flagged"])
        assert row["flagged"] == bool(row["lower"] > 0 or row["upper"] < 0)
        tolerant += bool(row["lower"] > 0.10 or row["upper"] < -0.10)
    # Binomial(20, 0.05): P(X >= 4) is about 0.016 (Newcombe's interval is, if anything, conservative)
    assert strict <= 3, strict
    assert tolerant == 0


def test_small_group_without_a_gap_is_too_wide_to_judge_never_flagged():
    """Issue 11: a group of 40 whose sample sensitivity is 1 got a [1, 1] bootstrap interval
    and a flag. The score interval cannot collapse: the gap is reported as too wide to judge."""
    rng = np.random.default_rng(8)
    log = simulate({"m": 400, "f": 40}, seed=8)
    women = log["sex"] == "f"
    log.loc[women & (log["label"] == 1), "predicted_risk"] = rng.uniform(0.2, 0.9, int((women & (log["label"] == 1)).sum()))
    settings = make_settings(threshold=0.15, flag_metrics=("sensitivity",), min_cell_size=1)  # statistics, not publication
    table = fairness.disparities(log, attribute="sex", settings=settings)
    row = _row(table, "f", "sensitivity")
    groups = fairness.group_metrics(log, attribute="sex", settings=settings)
    women_sensitivity = groups[(groups["group"] == "f") & (groups["metric"] == "sensitivity")].iloc[0]
    assert women_sensitivity["value"] == 1.0 and women_sensitivity["lower"] < 0.8  # every event caught, yet no point interval
    assert not row["flagged"] and row["lower"] < 0 < row["upper"]
    assert "too wide to judge" in row["sentence"]


def test_metrics_outside_flag_metrics_are_reported_not_flagged():
    log = simulate({"m": 600, "f": 500}, seed=1, miss_events={"f": 0.6})
    table = fairness.disparities(log, attribute="sex", settings=make_settings(flag_metrics=("auroc",)))
    row = _row(table, "f", "sensitivity")
    assert row["upper"] < -0.10 and not row["flagged"]
    assert "reported, not flagged" in row["sentence"]


# ---------------------------------------------------------------------------- over time


@pytest.fixture(scope="module")
def opening_gap() -> fairness.FairnessAudit:
    """Reference period and two production periods: women's sensitivity drops in 1993;
    1994's labels have not arrived."""
    periods = [simulate({"m": 500, "f": 400}, seed=10, period="reference", ages=True),
               simulate({"m": 500, "f": 400}, seed=12, period="1993", ages=True, miss_events={"f": 0.6}),
               simulate({"m": 200, "f": 150}, seed=13, period="1994", ages=True)]
    periods[-1]["label"] = pd.array([pd.NA] * len(periods[-1]), dtype="Int64")
    log = pd.concat(periods[1:] + periods[:1], ignore_index=True)  # the reference period goes first anyway
    return fairness.audit_over_time(log, attributes=["sex", "age"], bands={"age": [35, 50, 60, 70]},
                                    settings=make_settings())


def test_audit_orders_periods_and_holds_every_table(opening_gap):
    audit = opening_gap
    assert audit.periods == ("reference", "1993", "1994")
    assert audit.attributes == ("sex", "age_band", "sex × age_band")
    assert audit.reference_groups["sex"] == "m"
    assert list(dict.fromkeys(audit.groups["period"])) == list(audit.periods)
    table = audit.group_table(period="1993", attribute="sex")
    assert list(table.columns) == ["attribute", "group", "n", "suppressed", "metric", "value", "lower", "upper", "status"]


def test_gap_opening_is_flagged_in_its_period_only(opening_gap):
    flags = [f for f in opening_gap.flagged if f.attribute == "sex" and f.metric == "sensitivity"
             and f.measure == "difference"]
    assert [f.period for f in flags] == ["1993"]
    flag = flags[0]
    assert flag.group == "f" and flag.reference_group == "m" and flag.upper < -0.10
    assert flag.sentence.startswith("In 1993, sensitivity for sex f is")


def test_period_without_labels_says_so(opening_gap):
    table = opening_gap.group_table(period="1994", attribute="sex")
    assert (table[table["metric"] == "auroc"]["status"] == fairness.LABELS_NOT_AVAILABLE).all()
    assert table[table["metric"] == "selection_rate"]["value"].notna().all()
    disp = opening_gap.disparity_table(period="1994", attribute="sex")
    assert not disp["flagged"].any()
    assert disp[disp["metric"] == "auroc"]["status"].str.startswith("not computed").all()
    selection = _row(disp, "f", "selection_rate")
    assert selection["status"] == "ok"
    assert any("1994" in n and "labels have not arrived" in n for n in opening_gap.notes["note"])


def test_json_is_strict_json_and_holds_every_number(opening_gap):
    record = fairness.to_json(opening_gap)
    text = json.dumps(record, allow_nan=False)
    again = json.loads(text)
    assert again["periods"] == ["reference", "1993", "1994"]
    assert len(again["groups"]) == len(opening_gap.groups)
    assert len(again["disparities"]) == len(opening_gap.disparities)
    assert len(again["flagged"]) == len(opening_gap.flagged) > 0
    assert again["settings"]["min_cell_size"] == 11
    row = next(r for r in again["groups"] if r["period"] == "1994" and r["metric"] == "auroc" and r["group"] == "f")
    assert row["value"] is None


# ---------------------------------------------------------------------------- plots


def test_plots_return_figures_without_pyplot(opening_gap):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    forest = fairness_plots.forest_plot(opening_gap.groups, metric="sensitivity", period="1993")
    heat = fairness_plots.gap_heatmap(opening_gap, metric="sensitivity", attribute="sex")
    heat_ratio = fairness_plots.gap_heatmap(opening_gap, metric=EQUALIZED_ODDS, attribute="sex × age_band")
    for fig in (forest, heat, heat_ratio):
        assert isinstance(fig, Figure)
        fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
    assert plt.get_fignums() == before
    assert matplotlib.get_backend()  # nothing switched the backend
    with pytest.raises(ValueError, match="pass period="):
        fairness_plots.forest_plot(opening_gap.groups, metric="sensitivity")


def test_heatmap_marks_flagged_cells(opening_gap):
    fig = fairness_plots.gap_heatmap(opening_gap, metric="sensitivity", attribute="sex")
    texts = [t.get_text() for t in fig.axes[0].texts]
    flagged = _row(opening_gap.disparity_table(period="1993", attribute="sex"), "f", "sensitivity")
    assert f"{flagged['value']:.2f}*" in texts


def test_calibration_plot_draws_no_point_on_fewer_than_min_cell_size_patients():
    log = simulate({"m": 400, "f": 200, "x": 8}, seed=20)
    fig = fairness_plots.calibration_by_group(log, attribute="sex", n_bins=10, min_cell_size=11)
    ax = fig.axes[0]
    drawn = {line.get_label() for line in ax.get_lines()} | {c.get_label() for c in ax.containers}
    assert "x" not in drawn and {"f", "m"} <= drawn
    assert "Not drawn" in ax.get_xlabel() and "x" in ax.get_xlabel()
    # f (200 patients) at 10 bins: about 20 per bin, never fewer than 11
    fig_hidden = fairness_plots.calibration_by_group(log, attribute="sex", suppressed=["f"])
    labels = {c.get_label() for c in fig_hidden.axes[0].containers}
    assert "f" not in labels
