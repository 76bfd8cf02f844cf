"""Issue 11, item 1: are fairness gaps for small groups flagged at the rate they claim?

    .venv/bin/python bench/fairness_validity.py                            # 600 periods (150 for "before")
    .venv/bin/python bench/fairness_validity.py --reps 200 --before-reps 50  # quicker, noisier

A calibrated model (risk ~ Beta(2, 5), outcome ~ Bernoulli(risk)) serves two groups of
the same patients: the reference group of 400 and a small group of 40 (about 11 events)
or 100. The truth is known: both groups have the same sensitivity (0.80 at the operating
threshold), false-positive rate, PPV, AUROC, observed/expected (1) and calibration slope
(1), so every flagged gap is a false alarm. For each metric:

* coverage: share of periods whose interval for the small group contains the truth
  (target >= 93% for groups of 40);
* false flags: share of comparisons flagged beyond the tolerance (difference 0.10, ratio
  0.8 to 1.25, equalized-odds difference 0.10; target <= 5%).

A third scenario gives the small group a real sensitivity gap (0.45 against 0.80, some of
its events get a lower risk) to show what the honest intervals cost in power.

"before" is the percentile bootstrap within groups of clinval at commit f716744 (1000
resamples, about 3 s per simulated period, hence fewer periods); "after" is today's
score-type intervals (clinval.intervals, about 0.15 s per period).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.metrics import roc_auc_score

from _validity import Rate, Row, previous, print_table
from clinval import fairness

METRICS = ("sensitivity", "false_positive_rate", "ppv", "auroc", "observed_expected", "calibration_slope")
TOLERANCE = dict(tolerance_difference=0.10, tolerance_ratio=0.8)


def _risk(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(rng.beta(2, 5, n), 0.01, 0.99)


def truths(seed: int = 99) -> tuple[float, dict[str, float]]:
    """The threshold giving sensitivity 0.80, and each metric's population value."""
    rng = np.random.default_rng(seed)
    risk = _risk(rng, 2_000_000)
    y = rng.random(risk.size) < risk
    threshold = optimize.brentq(lambda t: np.mean(risk[y] >= t) - 0.80, 0.02, 0.6)
    selected = risk >= threshold
    return threshold, {
        "sensitivity": 0.80, "false_positive_rate": float(np.mean(selected[~y])), "ppv": float(np.mean(y[selected])),
        "auroc": float(roc_auc_score(y[:400_000], risk[:400_000])), "observed_expected": 1.0, "calibration_slope": 1.0,
    }


def simulate(rng: np.random.Generator, sizes: dict[str, int], threshold: float, missed: float = 0.0) -> pd.DataFrame:
    """``missed``: share of the small group's events whose risk is pushed below the threshold."""
    parts = []
    for group, n in sizes.items():
        risk = _risk(rng, n)
        y = (rng.random(n) < risk).astype(int)
        if group == "f" and missed:
            hit = (y == 1) & (risk >= threshold) & (rng.random(n) < missed)
            risk[hit] = threshold * rng.uniform(0.3, 0.95, int(hit.sum()))
        parts.append(pd.DataFrame({"sex": group, "predicted_risk": risk, "label": y}))
    log = pd.concat(parts, ignore_index=True)
    log["label"] = log["label"].astype("Int64")
    log["record_id"] = [f"r{i:05d}" for i in range(len(log))]
    return log


def _row(table: pd.DataFrame, metric: str, measure: str | None = None) -> pd.Series:
    rows = table[(table["group"] == "f") & (table["metric"] == metric)]
    if measure is not None:
        rows = rows[rows["measure"] == measure]
    return rows.iloc[0]


def run(reps: int, before_reps: int, seed: int) -> list[Row]:
    old = previous("fairness")
    threshold, truth = truths()
    rows: list[Row] = []
    for small, missed, label in ((40, 0.0, "no gap"), (100, 0.0, "no gap"), (40, 0.55, "true sensitivity gap")):
        start = time.perf_counter()
        rng = np.random.default_rng(seed + small + int(100 * missed))
        tally = {key: (Rate(), Rate()) for key in
                 [*(f"cover {m}" for m in METRICS), *(f"flag {m}" for m in METRICS), *(f"ratio {m}" for m in METRICS),
                  "flag equalized_odds"]}
        for rep in range(reps):
            log = simulate(rng, {"m": 400, "f": small}, threshold, missed)
            after = fairness._single(log, "sex", fairness.FairnessSettings(threshold=threshold, **TOLERANCE,
                                                                         flag_metrics=fairness.DEFAULT_FLAG_METRICS))
            both = [(1, after)]
            if rep < before_reps:
                both.append((0, old._single(log, "sex", old.FairnessSettings(
                    threshold=threshold, **TOLERANCE, n_bootstrap=1000, seed=rep, flag_metrics=old.DEFAULT_FLAG_METRICS))))
            for k, (groups, gaps) in both:
                for m in METRICS:
                    g = _row(groups, m)
                    if np.isfinite(g["lower"]):
                        tally[f"cover {m}"][k].add(g["lower"] <= truth[m] <= g["upper"])
                    d, r = _row(gaps, m, "difference"), _row(gaps, m, "ratio")
                    if d["status"] == "ok":
                        tally[f"flag {m}"][k].add(d["flagged"])
                    if r["status"] == "ok":
                        tally[f"ratio {m}"][k].add(r["flagged"])
                eod = _row(gaps, "equalized_odds", "difference")
                if eod["status"] == "ok":
                    tally["flag equalized_odds"][k].add(eod["flagged"])
        scenario = f"{label}: {small} vs 400 ({time.perf_counter() - start:.0f} s)"
        if missed:
            for m in ("sensitivity",):
                rows.append(Row("1", scenario, f"flagged (power), {m} difference", *tally[f"flag {m}"], "(higher is better)"))
            rows.append(Row("1", scenario, "flagged (power), equalized odds", *tally["flag equalized_odds"], "(higher is better)"))
            continue
        for m in METRICS:
            rows.append(Row("1", scenario, f"coverage, {m}", *tally[f"cover {m}"], ">= 93%"))
        for m in METRICS:
            rows.append(Row("1", scenario, f"false flags, {m} difference", *tally[f"flag {m}"], "<= 5%"))
            rows.append(Row("1", scenario, f"false flags, {m} ratio", *tally[f"ratio {m}"], "<= 5%"))
        rows.append(Row("1", scenario, "false flags, equalized odds", *tally["flag equalized_odds"], "<= 5%"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=600, help="simulated periods per scenario (default 600)")
    parser.add_argument("--before-reps", type=int, default=150, help="of which also run with the old method (default 150)")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()
    before_reps = min(args.before_reps, args.reps)
    print_table(run(args.reps, before_reps, args.seed),
                title=f"Item 1 - fairness gaps for small groups ({before_reps} / {args.reps} periods per scenario, before / after)")


if __name__ == "__main__":
    main()
