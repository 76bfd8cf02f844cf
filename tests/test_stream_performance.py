"""Performance from streamed counts against :mod:`clinval.performance` on the same records in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from stream_data import period_rows, population, reference_and_log, stream_profile

from clinval import performance, stream
from clinval.stream import PERFORMANCE_COLUMNS, RISK_LOGIT_LIMIT

METRICS = ["mean predicted risk", "prevalence", "AUROC", "Brier", "calibration intercept", "calibration slope", "O/E"]


@pytest.fixture(scope="module")
def reference():
    return reference_and_log(seed=5)[0]


@pytest.fixture(scope="module", params=[1024, 16], ids=["fine-grid", "coarse-grid"])
def case(request, reference):
    profile = stream_profile(reference, risk_resolution=request.param)
    rows = population(12_000, np.random.default_rng(21)).assign(period="p")
    table = stream.performance_table(stream.summarise_chunk(rows, profile)["p"]).set_index("metric")
    return profile, rows, table


def _estimate(table: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    return tuple(table.loc[metric, ["value", "lower", "upper"]].astype(float))


def test_table_has_every_metric_in_order(case):
    _, _, table = case
    assert list(table.index) == METRICS and list(table.reset_index().columns) == list(PERFORMANCE_COLUMNS)
    assert (table["status"] == "ok").all() and (table["n"] == 12_000).all()


def test_exact_metrics_equal_the_in_memory_functions(case):
    _, rows, table = case
    y, risk = rows["label"], rows["predicted_risk"]
    for metric, expected in (("O/E", performance.observed_expected(y, risk)), ("prevalence", performance.prevalence(y))):
        np.testing.assert_allclose(_estimate(table, metric), (expected.value, expected.lower, expected.upper), rtol=1e-12)
        assert table.loc[metric, "error_bound"] == 0
    assert table.loc["Brier", "value"] == pytest.approx(performance.brier(y, risk, n_bootstrap=10).value, rel=1e-12)
    assert table.loc["mean predicted risk", "value"] == pytest.approx(risk.mean(), rel=1e-12)


def test_auroc_is_delong_on_the_risk_grid_and_within_its_bound(case):
    profile, rows, table = case
    y, risk = rows["label"], rows["predicted_risk"]
    # the same DeLong computation on the grid bins, in memory: identical value and interval
    logit = np.log(np.clip(risk, 1e-12, 1 - 1e-12) / (1 - np.clip(risk, 1e-12, 1 - 1e-12)))
    grid_bin = np.floor((logit + RISK_LOGIT_LIMIT) * profile.risk_resolution)
    on_grid = performance.auroc(y, grid_bin)
    np.testing.assert_allclose(_estimate(table, "AUROC"), (on_grid.value, on_grid.lower, on_grid.upper), rtol=1e-10)
    exact = performance.auroc(y, risk)
    bound = table.loc["AUROC", "error_bound"]
    assert 0 < bound < (0.002 if profile.risk_resolution >= 1024 else 0.05)
    assert abs(table.loc["AUROC", "value"] - exact.value) <= bound


def test_calibration_fits_are_within_their_bounds(case):
    profile, rows, table = case
    y, risk = rows["label"], rows["predicted_risk"]
    for metric, function in (("calibration intercept", performance.calibration_intercept),
                             ("calibration slope", performance.calibration_slope)):
        expected = function(y, risk)
        bound = table.loc[metric, "error_bound"]
        assert 0 < bound < (1e-4 if profile.risk_resolution >= 1024 else 0.2)
        assert abs(table.loc[metric, "value"] - expected.value) <= bound
        # the Wald interval moves with the estimate; its width is that of the individual-level fit
        width, expected_width = table.loc[metric, "upper"] - table.loc[metric, "lower"], expected.upper - expected.lower
        assert width == pytest.approx(expected_width, rel=1e-3)


def test_brier_interval_agrees_with_the_bootstrap(reference):
    profile = stream_profile(reference, risk_resolution=16)  # the Brier sums do not use the grid
    rows = population(5_000, np.random.default_rng(8)).assign(period="p")
    table = stream.performance_table(stream.summarise_chunk(rows, profile)["p"]).set_index("metric")
    boot = performance.brier(rows["label"], rows["predicted_risk"], n_bootstrap=1500, seed=1)
    width = boot.upper - boot.lower
    # normal approximation against a 1,500-resample percentile bootstrap: Monte Carlo error of a few % of the width
    assert abs(table.loc["Brier", "lower"] - boot.lower) < 0.1 * width
    assert abs(table.loc["Brier", "upper"] - boot.upper) < 0.1 * width


def test_unlabelled_and_one_class_periods_say_why_as_performance_does(reference):
    profile = stream_profile(reference, risk_resolution=64)
    _, log = reference_and_log(seed=5)
    late = stream.performance_table(stream.summarise_chunk(log, profile)["late"]).set_index("metric")
    rows = period_rows(log, "late").dropna(subset=["predicted_risk", "label"])
    assert late.loc["AUROC", "n"] == len(rows) and late.loc["mean predicted risk", "n"] == int(
        period_rows(log, "late")["predicted_risk"].notna().sum())
    pending = population(50, np.random.default_rng(0)).assign(period="q", label=np.nan)
    table = stream.performance_table(stream.summarise_chunk(pending, profile)["q"]).set_index("metric")
    assert table.loc["mean predicted risk", "status"] == "ok"
    assert (table.drop(index="mean predicted risk")["status"] == performance.LABELS_PENDING).all()
    survivors = population(40, np.random.default_rng(1)).assign(period="q", label=0.0)
    table = stream.performance_table(stream.summarise_chunk(survivors, profile)["q"]).set_index("metric")
    for metric, function in (("AUROC", performance.auroc), ("calibration slope", performance.calibration_slope),
                             ("calibration intercept", performance.calibration_intercept)):
        assert table.loc[metric, "status"] == function(survivors["label"], survivors["predicted_risk"]).status
    assert table.loc["O/E", "status"].startswith("insufficient data")
    assert np.isnan(table.loc["AUROC", "value"])
