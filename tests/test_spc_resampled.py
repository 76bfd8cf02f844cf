"""Control-chart limits from a metric resampled in blocks equal those from one frame per resample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinval import performance as pf
from clinval import spc


def _reference(seed: int, n: int, prevalence: float, ties: int | None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    risk = rng.random(n)
    if ties:
        risk = np.round(risk * ties) / ties
    return pd.DataFrame({"predicted_risk": risk, "label": (rng.random(n) < prevalence).astype(float), "site": "a"})


def _limits(reference, metric, size, seed):
    try:
        return spc.in_control_from_reference(reference, metric=metric, period_size=size, n_resamples=150, seed=seed)
    except ValueError as error:  # too few finite values: both paths must refuse alike
        return str(error)


@pytest.mark.parametrize("name", pf.PERIOD_METRICS)
@pytest.mark.parametrize("seed, n, prevalence, ties, size", [
    (1, 300, 0.2, None, 120), (2, 1500, 0.1, 20, 400), (3, 80, 0.03, None, 30), (4, 900, 0.5, 5, 901),
])
def test_block_resampling_gives_the_same_in_control_estimate(name, seed, n, prevalence, ties, size, monkeypatch):
    reference = _reference(seed, n, prevalence, ties)
    metric = pf.PeriodMetric(name)
    one_by_one = _limits(reference, lambda frame: metric(frame), size, seed)  # no `resampled`: a frame per resample
    monkeypatch.setattr(spc, "_RESAMPLE_CELLS", size * 7)  # several blocks, the last one shorter
    assert _limits(reference, metric, size, seed) == one_by_one


def test_period_metric_equals_the_functions_it_replaces():
    frame = _reference(5, 500, 0.2, 10)
    assert pf.PeriodMetric("mean predicted risk")(frame) == float(frame["predicted_risk"].mean())
    assert pf.PeriodMetric("O/E")(frame) == pf.observed_expected(frame["label"], frame["predicted_risk"]).value
    assert pf.PeriodMetric("AUROC")(frame) == pf.auroc(frame["label"], frame["predicted_risk"]).value


def test_missing_values_fall_back_to_one_frame_per_resample():
    frame = _reference(6, 200, 0.3, None)
    frame.loc[[3, 50], "label"] = np.nan
    metric = pf.PeriodMetric("O/E")
    rows = np.random.default_rng(0).integers(0, 200, (5, 200))
    np.testing.assert_array_equal(metric.resampled(frame, rows), [metric(frame.iloc[r]) for r in rows])


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown period metric"):
        pf.PeriodMetric("accuracy")
