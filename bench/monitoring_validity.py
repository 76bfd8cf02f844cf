"""Issue 11, items 2-4: control charts, label-free estimates and the calibration intercept.

    .venv/bin/python bench/monitoring_validity.py              # default simulation sizes
    .venv/bin/python bench/monitoring_validity.py --scale 0.3  # quicker, noisier

Item 2, control charts. A reference hold-out of m patients and six in-control production
periods of n = 500 patients (risk ~ Beta(2, 8), outcomes ~ Bernoulli(risk), so the model
is calibrated and nothing changes). Target and sigma of each monitored metric come from
``spc.in_control_from_reference`` (200 resamples of the hold-out at the period size;
notebook 02 uses 1000, and the limits account for either). Measure: share of simulated monitoring runs with any signal within the six
periods, at m = n (the default: hold-out about one period) and m = 4n. "before" uses the
textbook limits (h = 5, L = 3); "after" widens them for the estimation error to a 5%
chance of any false signal (``false_alarm=0.05``). The price is shown by a run whose mean
predicted risk rises by 2 period-sds from period 4 on.

Item 3, CBPE. A calibrated model and pure covariate shift: reference logit(risk) ~
N(-1.5, 1), production ~ N(-0.8, 0.7), outcomes ~ Bernoulli(risk) in both, so the relation
is unchanged and the realised metric should fall inside the interval 95% of the time.
Reference hold-out 500 or 5,000, production periods of 1,000, operating threshold 0.2. A
second scenario bends the model's calibration (true logit = logit(risk) + 0.6 sin(1.5
logit(risk))) in both periods: miscalibrated, but still no change of relation.

Item 4, calibration intercept. Logistic recalibration of 500 patients when the true
calibration slope is not 1 (over-fitted model: slope 0.5, logit(risk) ~ N(-1.2, 2)); the
truth is the pseudo-true intercept (the one the offset model converges to), computed from
four million patients.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import expit

from _validity import Rate, Row, previous, print_table
from clinval import monitor, performance, spc

PERIODS = 6


# ---------------------------------------------------------------------------- item 2


def _period(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    risk = np.clip(rng.beta(2, 8, n) + shift, 0.001, 0.999)
    return pd.DataFrame({"predicted_risk": risk, "label": (rng.random(n) < risk).astype(int)})


def charts(reps: int, seed: int) -> list[Row]:
    rows = []
    metrics = monitor._metric_functions()
    n = 500
    sd_risk = float(np.std(np.random.default_rng(0).beta(2, 8, 1_000_000))) / math.sqrt(n)
    for m, shift in ((n, 0.0), (4 * n, 0.0), (n, 2.0)):
        start = time.perf_counter()
        rng = np.random.default_rng(seed + m + int(shift))
        names = ["mean predicted risk"] if shift else list(metrics)
        alarms = {(metric, kind): (Rate(), Rate()) for metric in names for kind in ("cusum", "ewma")}
        stated = {}
        for rep in range(reps):
            reference = _period(rng, m)
            periods = [_period(rng, n, shift * sd_risk if t >= 3 else 0.0) for t in range(PERIODS)]
            for metric in names:
                fn = metrics[metric]
                control = spc.in_control_from_reference(reference, metric=fn, period_size=n, n_resamples=200, seed=rep)
                values = [fn(p) for p in periods]
                for kind, chart in (("cusum", spc.cusum), ("ewma", spc.ewma)):
                    before = chart(values, target=control.target, sigma=control.sigma)
                    after = chart(values, target=control.target, sigma=control.sigma, target_se=control.target_se,
                                  sigma_df=control.sigma_df, false_alarm=0.05)
                    alarms[(metric, kind)][0].add(before.first_signal is not None)
                    alarms[(metric, kind)][1].add(after.first_signal is not None)
                    stated[(metric, kind)] = after
        took = time.perf_counter() - start
        for (metric, kind), (before, after) in alarms.items():
            chart = stated[(metric, kind)]
            limit = chart.parameters.get("h", chart.parameters.get("L"))
            if shift:
                scenario = f"m = n = {n}, +2 sd from period 4 ({took:.0f} s)"
                rows.append(Row("2", scenario, f"{kind} {metric}: signal (power)", before, after, "(higher is better)"))
            else:
                scenario = f"in control, hold-out m = {m}, n = {n} ({took:.0f} s)"
                rows.append(Row("2", scenario, f"{kind} {metric}: any signal in 6", before, after, "<= 5%"))
                rows.append(Row("2", scenario, f"{kind} {metric}: stated (last run)",
                                f"ARL0 {spc.cusum_arl(k=0.5, h=5) if kind == 'cusum' else spc.ewma_arl(lam=0.2, L=3):.0f}",
                                f"ARL0 {chart.in_control_arl:,.0f}, limit {limit:.2f}", "stated"))
    return rows


# ---------------------------------------------------------------------------- item 3


def _curve(lp: np.ndarray, curved: bool) -> np.ndarray:
    return lp + 0.6 * np.sin(1.5 * lp) if curved else lp


def cbpe(reps: int, before_reps: int, seed: int) -> list[Row]:
    old = previous("performance")
    rows = []
    threshold, n = 0.2, 1_000
    for curved in (False, True):
        for m in (500, 5_000):
            start = time.perf_counter()
            rng = np.random.default_rng(seed + m + curved)
            cover = {metric: (Rate(), Rate()) for metric in performance.CBPE_METRICS}
            for rep in range(reps):
                ref_lp, lp = rng.normal(-1.5, 1.0, m), rng.normal(-0.8, 0.7, n)
                ref_y = (rng.random(m) < expit(_curve(ref_lp, curved))).astype(int)
                y = (rng.random(n) < expit(_curve(lp, curved))).astype(int)
                risk = expit(lp)
                realised = performance.realised_metrics(y, risk, threshold=threshold)
                before = (old.PerformanceEstimator.fit(ref_y, expit(ref_lp)).estimate(risk, seed=rep).set_index("metric")
                          if rep < before_reps else pd.DataFrame(index=pd.Index([], name="metric")))
                after = performance.PerformanceEstimator.fit(ref_y, expit(ref_lp)).estimate(risk, threshold=threshold, seed=rep)
                after = performance.against_realised(after, realised).set_index("metric")
                for metric in performance.CBPE_METRICS:
                    if metric in before.index:
                        cover[metric][0].add(before.loc[metric, "lower"] <= realised[metric] <= before.loc[metric, "upper"])
                    outside = after.loc[metric, "outside"]
                    cover[metric][1].add(outside is not None and not outside)
            scenario = f"{'miscalibrated' if curved else 'calibrated'}, reference {m:,}, n = {n:,} ({time.perf_counter() - start:.0f} s)"
            for metric, (before, after) in cover.items():
                rows.append(Row("3", scenario, f"realised {metric} inside interval", before if before.total else "not estimated",
                                after, ">= 92%"))
    return rows


# ---------------------------------------------------------------------------- item 4


def intercept(reps: int, seed: int) -> list[Row]:
    old = previous("performance")
    rows = []
    n = 500
    for slope, spread in ((0.5, 2.0), (0.7, 1.5), (1.0, 1.0)):
        start = time.perf_counter()
        rng = np.random.default_rng(seed + int(10 * slope))
        big = rng.normal(-1.2, spread, 4_000_000)
        truth = optimize.brentq(lambda a: np.mean(expit(slope * big) - expit(a + big)), -5, 5)
        before, after = Rate(), Rate()
        for _ in range(reps):
            lp = rng.normal(-1.2, spread, n)
            y = (rng.random(n) < expit(slope * lp)).astype(int)
            for rate, fn in ((before, old.calibration_intercept), (after, performance.calibration_intercept)):
                est = fn(y, expit(lp))
                rate.add(est.lower <= truth <= est.upper)
        scenario = f"true slope {slope}, logit sd {spread}, n = {n} ({time.perf_counter() - start:.0f} s)"
        rows.append(Row("4", scenario, "95% CI covers the intercept", before, after, ">= 94%"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every simulation size (default 1)")
    parser.add_argument("--seed", type=int, default=20240612)
    parser.add_argument("--items", default="234", help="which items to run (default 234)")
    args = parser.parse_args()
    sizes = {"2": max(20, int(300 * args.scale)), "3": max(20, int(300 * args.scale)), "4": max(50, int(2_000 * args.scale))}
    before_cbpe = max(10, int(100 * args.scale))  # the old CBPE costs ~2 s per period (500 sklearn AUROCs)
    if "2" in args.items:
        print_table(charts(sizes["2"], args.seed), title=f"Item 2 - control charts ({sizes['2']} monitoring runs per scenario)")
    if "3" in args.items:
        print_table(cbpe(sizes["3"], before_cbpe, args.seed),
                    title=f"Item 3 - CBPE intervals ({before_cbpe} / {sizes['3']} periods per scenario, before / after)")
    if "4" in args.items:
        print_table(intercept(sizes["4"], args.seed), title=f"Item 4 - calibration intercept ({sizes['4']} samples per scenario)")


if __name__ == "__main__":
    main()
