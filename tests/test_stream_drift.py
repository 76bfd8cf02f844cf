"""Drift rows from streamed counts against :func:`clinval.drift.compare_period` on the same rows in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_data import CATEGORICAL, NUMERIC, period_rows, reference_and_log, stream_profile

from clinval import drift, stream
from clinval.drift import RESULT_COLUMNS, DriftSettings
from clinval.profile import build_reference_profile

EXACT = ["feature", "kind", "n_reference", "n_current", "test", "psi", "js_distance", "psi_critical",
         "missing_rate_reference", "missing_rate_current", "unseen_categories", "unseen_rate", "status"]


@pytest.fixture(scope="module")
def data():
    reference, log = reference_and_log(seed=11)
    return reference, log, stream.summarise_chunk(log, stream_profile(reference))


def test_streamed_rows_equal_compare_period_when_the_grid_holds_every_reference_value(data):
    reference, log, _ = data
    profile = stream_profile(reference)  # lab has 2,375 distinct reference values: all on the grid
    assert all(profile.exact_ks.values())
    counts = stream.summarise_chunk(log, profile)
    for period in ("same", "shifted", "late"):
        streamed = stream.drift_table(profile, counts[period])
        expected = drift.compare_period(profile.features, period_rows(log, period))
        assert list(streamed.columns) == [*RESULT_COLUMNS, "statistic_bound", "wasserstein_bound"]
        pd.testing.assert_frame_equal(streamed[EXACT], expected[EXACT])
        # KS D and p-value: the same rationals evaluated the same way (allow the last bit)
        for column in ("statistic", "p_value", "q_value"):
            np.testing.assert_allclose(streamed[column], expected[column], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(streamed["drifted"], expected["drifted"])
        assert (streamed["statistic_bound"] == 0).all()
        numeric = streamed["kind"] == "numeric"
        gap = (streamed["wasserstein_norm"] - expected["wasserstein_norm"]).abs()[numeric]
        assert (gap <= streamed["wasserstein_bound"][numeric] + 1e-12).all()


def test_the_known_drift_is_found_and_nothing_else(data):
    reference, _, counts = data
    profile = stream_profile(reference)
    shifted = stream.drift_table(profile, counts["shifted"]).set_index("feature")
    assert shifted.loc["age", "drifted"] and shifted.loc["sex", "drifted"]  # age + 6 years; unseen category "u"
    assert shifted.loc["sex", "unseen_categories"] == 1 and 0.05 < shifted.loc["sex", "unseen_rate"] < 0.15
    assert not shifted.loc["site", "drifted"] and not shifted.loc["lab", "drifted"]
    for period in ("same", "late"):
        assert not stream.drift_table(profile, counts[period])["drifted"].any()


def test_a_coarse_grid_stays_within_its_stated_bounds(data):
    reference, log, _ = data
    profile = stream_profile(reference, max_grid=30)
    assert profile.exact_ks == {"age": False, "lab": False, "predicted_risk": False}
    counts = stream.summarise_chunk(log, profile)
    for period in ("same", "shifted", "late"):
        streamed = stream.drift_table(profile, counts[period]).set_index("feature")
        expected = drift.compare_period(profile.features, period_rows(log, period)).set_index("feature")
        for name in NUMERIC:
            bound = streamed.loc[name, "statistic_bound"]
            if counts[period].inputs.ecdf[name].off_grid is not None:  # few distinct values: the exact sample is kept
                assert bound == 0 and streamed.loc[name, "p_value"] == expected.loc[name, "p_value"]
            else:
                assert 0 < bound < 0.1
            assert abs(streamed.loc[name, "statistic"] - expected.loc[name, "statistic"]) <= bound + 1e-12
            w_gap = abs(streamed.loc[name, "wasserstein_norm"] - expected.loc[name, "wasserstein_norm"])
            assert w_gap <= streamed.loc[name, "wasserstein_bound"] + 1e-12
        # bins and categories do not depend on the grid
        for column in ("psi", "js_distance"):
            np.testing.assert_array_equal(streamed[column], expected[column])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(-1.0, 1.0), max_grid=st.sampled_from([3, 8, 40, 10_000]),
       ties=st.booleans())
def test_ks_and_wasserstein_bounds_hold_on_random_samples(seed, shift, max_grid, ties):
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 400)})
    current = pd.DataFrame({"x": rng.normal(shift, 1.3, 300)})
    if ties:
        reference, current = reference.round(1), current.round(1)
    features = build_reference_profile(reference, numeric=["x"], categorical=[])
    profile = stream.build_stream_profile(features, max_grid=max_grid)
    log = current.assign(period="p", label=0.0, predicted_risk=0.5)
    row = stream.drift_table(profile, stream.summarise_chunk(log, profile)["p"]).iloc[0]
    exact = drift.compare_period(features, current).iloc[0]
    assert abs(row["statistic"] - exact["statistic"]) <= row["statistic_bound"] + 1e-12
    assert abs(row["wasserstein_norm"] - exact["wasserstein_norm"]) <= row["wasserstein_bound"] + 1e-12
    if profile.exact_ks["x"]:
        assert row["statistic"] == pytest.approx(exact["statistic"], rel=1e-12) and row["statistic_bound"] == 0


def test_prediction_drift_equals_drift_prediction_drift(data):
    reference, log, counts = data
    profile = stream_profile(reference)
    for period in ("same", "shifted"):
        streamed = stream.prediction_drift_table(profile, counts[period])
        expected = drift.prediction_drift(reference_scores=reference["predicted_risk"],
                                          current_scores=period_rows(log, period)["predicted_risk"])
        pd.testing.assert_frame_equal(streamed[EXACT], expected[EXACT])
        np.testing.assert_allclose(streamed[["statistic", "p_value"]], expected[["statistic", "p_value"]], rtol=1e-12)
        assert streamed["drifted"].item() == expected["drifted"].item() == (period == "shifted")
    assert stream.prediction_drift_table(stream.build_stream_profile(profile.features), counts["same"]).empty


def test_stream_tables_hold_every_period_and_say_which_drifted(data):
    reference, log, _ = data
    profile = stream_profile(reference)
    summary = stream.LogSummary(periods=stream.summarise_chunk(log, profile), n_rows=len(log), n_without_period=4,
                                n_batches=1, largest_batch=len(log))
    tables = stream.stream_tables(profile, summary, settings=DriftSettings(fdr_level=0.01))
    assert set(tables.features["period"]) == {"same", "shifted", "late"}
    assert len(tables.features) == 3 * (len(NUMERIC) + len(CATEGORICAL))
    view = tables.drift_summary().set_index("period")
    assert view.loc["shifted", "which"] == "age, sex" and view.loc["same", "which"] == "none"
    assert bool(view.loc["shifted", "prediction drifted"]) and not bool(view.loc["same", "prediction drifted"])
    assert view.loc["same", "rows"] == int((log["period"] == "same").sum())
    with pytest.raises(ValueError, match="n_bins"):
        stream.drift_table(profile, summary.periods["same"], settings=DriftSettings(n_bins=5))
