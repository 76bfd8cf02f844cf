"""Disclosure control at publication (clinval.disclosure): what show() lets into a record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinval import disclosure
from clinval.performance import Estimate


@pytest.mark.parametrize(("text", "expected"), [
    ("calibration slope: 1 events and 28 non-events (need at least 10 of each)",
     "calibration slope: <11 events and 28 non-events (need at least 10 of each)"),
    ("f × 35-54 has no events, so AUROC cannot be computed",
     "f × 35-54 has fewer than 11 patients with or without the outcome, so AUROC cannot be computed"),
    ("only one outcome class (0 events, 18 non-events)", "fewer than 11 patients with or without the outcome"),
    ("446 records, 12 events in 1993", "446 records, 12 events in 1993"),
    ("ages 35-54, 2 deaths", "ages 35-54, <11 deaths"),
])
def test_sentences_lose_small_counts(text, expected):
    assert disclosure.redact_text(text, min_cell_size=11) == expected


def test_counts_in_tables_mappings_and_dataclasses_are_suppressed():
    frame = pd.DataFrame({"group": ["a", "b"], "n": [4, 40], "events": [0, 12]})
    out = disclosure.publishable(frame, min_cell_size=11)
    assert out["n"].tolist() == ["<11", 40] and out["events"].tolist() == [0, 12]
    assert disclosure.publishable({"n_events": 3, "n": 30}, min_cell_size=11) == {"n_events": "<11", "n": 30}
    est = Estimate(metric="O/E", value=1.0, lower=0.5, upper=2.0, method="x", n=500,
                   status="insufficient data: 3 events and 497 non-events")
    assert "<11 events" in disclosure.publishable(est, min_cell_size=11).status


def test_calibration_bins_hold_enough_events_and_non_events():
    rng = np.random.default_rng(3)
    risk = rng.uniform(0.01, 0.5, 400)
    y = (rng.random(400) < risk).astype(int)
    table = disclosure.calibration_table(y, risk, n_bins=10, min_cell_size=11)
    events = np.rint(table["observed"] * table["n"])
    assert (events >= 11).all() and ((table["n"] - events) >= 11).all()
    assert table["n"].sum() == 400 and len(table) >= 2
    assert (table["lower"] <= table["observed"]).all() and (table["observed"] <= table["upper"]).all()
    # an existing table (e.g. from performance.calibration_curve) pools the same way in show()
    pooled = disclosure.publishable(pd.DataFrame({"bin": range(4), "n": [49, 49, 49, 49], "mean_predicted": [.05, .1, .2, .4],
                                                  "observed": [4 / 49, 7 / 49, 12 / 49, 20 / 49]}), min_cell_size=11)
    events = np.rint(pooled["observed"] * pooled["n"])
    assert (events >= 11).all() and pooled["n"].sum() == 196


def test_too_few_events_publish_no_calibration_point():
    y = np.r_[np.ones(5), np.zeros(100)]
    assert disclosure.calibration_table(y, np.linspace(0.01, 0.9, 105), min_cell_size=11).empty


def test_rate_is_publishable_only_with_enough_on_both_sides():
    assert disclosure.rate_is_publishable(11, 22, min_cell_size=11)
    assert not disclosure.rate_is_publishable(0, 400, min_cell_size=11)
    assert not disclosure.rate_is_publishable(395, 400, min_cell_size=11)
