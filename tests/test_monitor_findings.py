"""Outcome-rate findings cite every period that moved, not only the last (issue 16, item 9)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clinval import monitor, performance
from clinval.data import REFERENCE


def _log(rng: np.random.Generator) -> pd.DataFrame:
    parts = [pd.DataFrame({"period": REFERENCE, "label": (rng.random(1000) < 0.10).astype(int)})]
    parts.append(pd.DataFrame({"period": "2001", "label": np.zeros(336, dtype=int)}))  # no event at all
    for period in ("2002", "2003"):
        labels = np.zeros(400, dtype=int)
        labels[:40] = 1  # exactly the reference rate
        parts.append(pd.DataFrame({"period": period, "label": labels}))
    return pd.concat(parts, ignore_index=True)


def test_a_period_without_events_reaches_the_findings_although_it_is_not_the_last():
    log = _log(np.random.default_rng(3))
    table = monitor._prevalence_rows(log, ["2001", "2002", "2003"], ["2001", "2002", "2003"], 0.95)
    assert (table["status"] == "ok").all()
    [sentence] = monitor._outcome_rate_findings(table)
    assert "in 1 period: 2001 0.0%" in sentence and "2003" not in sentence


def test_no_shift_names_the_last_period():
    log = _log(np.random.default_rng(3))
    log = log[log["period"] != "2001"]
    table = monitor._prevalence_rows(log, ["2002", "2003"], ["2002", "2003"], 0.95)
    table = table.assign(difference_lower=-0.01, difference_upper=0.01)  # both CIs include 0
    [sentence] = monitor._outcome_rate_findings(table)
    assert sentence.startswith("The outcome rate of no production period differs") and "2003" in sentence


def test_observed_expected_with_no_events_is_zero_with_the_exact_poisson_bound():
    risk = np.full(336, 0.1)  # 33.6 events expected
    estimate = performance.observed_expected(np.zeros(336), risk)
    assert estimate.status == "ok" and estimate.value == 0.0 and estimate.lower == 0.0
    # P(X = 0 | lambda) = 2.5% at lambda = -ln(0.025): the textbook upper 95% bound of a zero count
    assert estimate.upper == pytest.approx(-math.log(0.025) / 33.6, rel=1e-9)
    assert stats.poisson.cdf(0, estimate.upper * 33.6) == pytest.approx(0.025, rel=1e-9)
    # the calibration trigger can now see it: the whole interval lies below 1
    assert estimate.upper < 1

