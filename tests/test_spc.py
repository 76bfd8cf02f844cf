"""CUSUM and EWMA charts: textbook ARLs, recursions, limits from the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinval.spc import cusum, cusum_arl, ewma, ewma_arl, in_control_from_reference, in_control_from_values


@pytest.mark.parametrize(
    ("k", "h", "shift", "textbook"),
    [(0.5, 4.0, 0.0, 168.0), (0.5, 5.0, 0.0, 465.0), (0.5, 5.0, 1.0, 10.4), (0.5, 4.0, 1.0, 8.38)],
)
def test_cusum_arl_matches_montgomery(k, h, shift, textbook):
    assert cusum_arl(k=k, h=h, shift=shift) == pytest.approx(textbook, rel=0.015)


@pytest.mark.parametrize(
    ("lam", "L", "shift", "textbook"),
    [(0.1, 2.814, 0.0, 500.0), (0.2, 2.962, 0.0, 500.0), (0.2, 3.0, 0.0, 562.0), (0.1, 2.814, 1.0, 10.3)],
)
def test_ewma_arl_matches_lucas_saccucci(lam, L, shift, textbook):
    assert ewma_arl(lam=lam, L=L, shift=shift) == pytest.approx(textbook, rel=0.015)


def test_cusum_arl_by_simulation():
    """Vectorised run lengths of the same recursion agree with the Markov-chain ARL."""
    rng = np.random.default_rng(0)
    chains, k, h = 4_000, 0.5, 3.0
    hi = np.zeros(chains)
    lo = np.zeros(chains)
    run = np.zeros(chains, dtype=int)
    alive = np.ones(chains, dtype=bool)
    t = 0
    while alive.any() and t < 20_000:
        t += 1
        z = rng.normal(size=chains)
        hi = np.where(alive, np.maximum(0, hi + z - k), hi)
        lo = np.where(alive, np.maximum(0, lo - z - k), lo)
        stopped = alive & ((hi > h) | (lo > h))
        run[stopped] = t
        alive &= ~stopped
    assert run.mean() == pytest.approx(cusum_arl(k=k, h=h), rel=0.06)


def test_cusum_recursion_by_hand():
    chart = cusum([10, 12, 14, 14, 6], target=10, sigma=2, k=0.5, h=2.0)
    points = chart.points
    np.testing.assert_allclose(points["z"], [0, 1, 2, 2, -2])
    np.testing.assert_allclose(points["upper"], [0, 0.5, 2.0, 3.5, 1.0])
    np.testing.assert_allclose(points["lower"], [0, 0, 0, 0, 1.5])
    assert points["signal"].tolist() == [False, False, False, True, False]
    assert chart.first_signal == 3
    assert "ARL0" in chart.assumption and chart.false_alarm_rate == pytest.approx(1 / chart.in_control_arl)


def test_ewma_recursion_and_exact_limits():
    chart = ewma([1.0, 1.0, 1.0], target=0.0, sigma=1.0, lam=0.5, L=3.0)
    np.testing.assert_allclose(chart.points["ewma"], [0.5, 0.75, 0.875])
    expected = [3 * np.sqrt(0.5 / 1.5 * (1 - 0.5 ** (2 * t))) for t in (1, 2, 3)]
    np.testing.assert_allclose(chart.points["upper_limit"], expected)
    np.testing.assert_allclose(chart.points["lower_limit"], -np.asarray(expected))


def test_charts_signal_on_a_sustained_shift_and_not_before():
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(0.2, 0.01, 20), rng.normal(0.23, 0.01, 20)]  # +3 sigma from period 20
    for chart in (cusum(values, target=0.2, sigma=0.01), ewma(values, target=0.2, sigma=0.01)):
        assert chart.first_signal is not None and 20 <= chart.first_signal <= 25, chart.kind


def test_per_point_sigma_and_missing_values():
    chart = cusum([0.0, np.nan, 3.0], target=0.0, sigma=[1.0, 1.0, 0.5], k=0.5, h=4.0)
    np.testing.assert_allclose(chart.points["upper"], [0.0, 0.0, 5.5])
    assert chart.points["signal"].tolist() == [False, False, True]
    e = ewma([0.0, np.nan, 1.0], target=0.0, sigma=1.0)
    assert not e.points["signal"].iloc[1]


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: cusum([1, 2], target=0, sigma=0), "sigma must be positive"),
        (lambda: cusum([1, 2], target=0, sigma=[1, 1, 1]), "sigma has 3 values"),
        (lambda: ewma([1, 2], target=0, sigma=1, lam=0), "lam"),
        (lambda: cusum([1, 2], target=0, sigma=1, h=-1), "h must be"),
        (lambda: in_control_from_values([1.0]), "at least 2"),
    ],
)
def test_bad_parameters_are_named(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_in_control_from_reference_bootstrap_sd_scales_with_period_size():
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"predicted_risk": rng.beta(2, 8, 4_000)})
    estimate = in_control_from_reference(
        reference, metric=lambda f: f["predicted_risk"].mean(), period_size=400, n_resamples=400, seed=1
    )
    assert estimate.method == "bootstrap" and estimate.period_size == 400
    assert estimate.target == pytest.approx(reference["predicted_risk"].mean(), abs=3 * estimate.sigma / 20)
    assert estimate.sigma == pytest.approx(reference["predicted_risk"].std() / np.sqrt(400), rel=0.15)
    again = in_control_from_reference(
        reference, metric=lambda f: f["predicted_risk"].mean(), period_size=400, n_resamples=400, seed=1
    )
    assert again == estimate


def test_in_control_from_reference_skips_undefined_metric_values():
    reference = pd.DataFrame({"y": [0] * 95 + [1] * 5})
    metric = lambda f: f["y"].mean() if f["y"].nunique() > 1 else float("nan")  # noqa: E731
    estimate = in_control_from_reference(reference, metric=metric, period_size=40, n_resamples=200, seed=0)
    assert estimate.n < 200 and estimate.n >= 20
