"""CUSUM and EWMA charts: textbook ARLs, recursions, limits from the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinval.spc import (
    cusum,
    cusum_arl,
    cusum_run_length,
    ewma,
    ewma_arl,
    ewma_run_length,
    in_control_from_reference,
    in_control_from_values,
)


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


# ---------------------------------------------------------------------------- estimated parameters


def _simulated_alarm_share(kind: str, limit: float, target_error: float, sigma_df: float, horizon: int,
                           chains: int = 40_000, seed: int = 0) -> float:
    """Brute force: the target off by c ~ N(0, target_error^2), the sd by s^2 ~ chi2(df)/df."""
    rng = np.random.default_rng(seed)
    c = rng.normal(0, target_error, chains)
    s = np.sqrt(rng.chisquare(sigma_df, chains) / sigma_df)
    alarm = np.zeros(chains, dtype=bool)
    hi, lo, w = np.zeros(chains), np.zeros(chains), np.zeros(chains)
    for t in range(1, horizon + 1):
        z = (rng.normal(size=chains) + c) / s
        if kind == "cusum":
            hi, lo = np.maximum(0, hi + z - 0.5), np.maximum(0, lo - z - 0.5)
            alarm |= (hi > limit) | (lo > limit)
        else:
            w = 0.2 * z + 0.8 * w
            alarm |= np.abs(w) > limit * np.sqrt(0.2 / 1.8 * (1 - 0.8 ** (2 * t)))
    return float(alarm.mean())


@pytest.mark.parametrize(("kind", "limit"), [("cusum", 5.0), ("cusum", 10.0), ("ewma", 3.0), ("ewma", 5.0)])
def test_run_length_with_estimated_parameters_matches_simulation(kind, limit):
    """Reference the size of one period: the target's error is one sd (Jones, Champ & Rigdon)."""
    if kind == "cusum":
        run = cusum_run_length(k=0.5, h=limit, horizon=6, target_error=1.0, sigma_df=400)
    else:
        run = ewma_run_length(lam=0.2, L=limit, horizon=6, target_error=1.0, sigma_df=400)
    simulated = _simulated_alarm_share(kind, limit, 1.0, 400, 6)
    # 40,000 chains: binomial SD below 0.0022
    assert run.false_alarm_within == pytest.approx(simulated, abs=0.007)


def test_known_parameters_give_the_textbook_run_length():
    run = cusum_run_length(k=0.5, h=5.0, horizon=6)
    assert run.arl == pytest.approx(cusum_arl(k=0.5, h=5.0), rel=0.01)
    assert run.false_alarm_within == pytest.approx(_simulated_alarm_share("cusum", 5.0, 0.0, 1e9, 6, chains=200_000), abs=0.001)
    # exact (time-varying) EWMA limits signal a little earlier than the asymptotic ones of the table
    exact = ewma_run_length(lam=0.2, L=3.0, horizon=40)
    assert 0.97 * ewma_arl(lam=0.2, L=3.0) < exact.arl < ewma_arl(lam=0.2, L=3.0)


def test_textbook_limits_alarm_often_when_the_target_was_estimated_and_adjusted_ones_do_not():
    textbook = cusum_run_length(k=0.5, h=5.0, horizon=6, target_error=1.0, sigma_df=400)
    assert textbook.false_alarm_within > 0.2  # the issue: 22% of in-control charts signalled within 6 periods
    values = np.zeros(6)
    for chart_fn in (cusum, ewma):
        chart = chart_fn(values, target=0.0, sigma=1.0, target_se=1.0, sigma_df=400, false_alarm=0.05)
        assert chart.false_alarm_within == pytest.approx(0.05, abs=1e-3)
        assert chart.parameters.get("h", chart.parameters.get("L")) > (5.0 if chart_fn is cusum else 3.0)
        assert "estimated from the reference" in chart.assumption and "5.0%" in chart.assumption


def test_false_alarm_never_narrows_the_textbook_limits():
    chart = cusum(np.zeros(3), target=0.0, sigma=1.0, target_se=0.01, sigma_df=10_000, false_alarm=0.05)
    assert chart.parameters["h"] == 5.0 and chart.false_alarm_within < 0.05


def test_adjusted_chart_holds_its_false_alarm_rate_end_to_end():
    """The whole procedure: a reference of 300 rows, target and sigma by resampling, six
    in-control periods of 300 rows, limits widened for 5% within the six periods."""
    rng = np.random.default_rng(11)
    alarms = {"cusum": 0, "ewma": 0}
    reps = 100
    for _ in range(reps):
        reference = pd.DataFrame({"predicted_risk": rng.beta(2, 8, 300)})
        control = in_control_from_reference(reference, metric=lambda f: f["predicted_risk"].mean(), period_size=300,
                                            n_resamples=60, seed=1)
        values = [rng.beta(2, 8, 300).mean() for _ in range(6)]
        for kind, fn in (("cusum", cusum), ("ewma", ewma)):
            chart = fn(values, target=control.target, sigma=control.sigma, target_se=control.target_se,
                       sigma_df=control.sigma_df, false_alarm=0.05)
            alarms[kind] += chart.first_signal is not None
    # textbook limits: about 24% and 30%; binomial SD at 5% and 100 replicates: 2.2 points
    assert all(a / reps <= 0.10 for a in alarms.values()), alarms


def test_in_control_estimates_carry_their_own_error():
    values = [0.2, 0.22, 0.19, 0.21, 0.18]
    control = in_control_from_values(values)
    assert control.target_se == pytest.approx(np.std(values, ddof=1) / np.sqrt(5)) and control.sigma_df == 4
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"predicted_risk": rng.beta(2, 8, 1_000)})
    boot = in_control_from_reference(reference, metric=lambda f: f["predicted_risk"].mean(), period_size=250,
                                     n_resamples=300, seed=0)
    assert boot.reference_size == 1_000
    assert boot.target_se == pytest.approx(boot.sigma * np.sqrt(250 / 1_000 + 1 / 300))
    assert boot.sigma_df == pytest.approx(1 / (1 / 999 + 1 / 299))
