"""Validity of the drift decisions: per-period false alarms and power, by simulation.

    uv run python bench/drift_validity.py                 # n = 100, 1,000, 10,000
    uv run python bench/drift_validity.py --reps 200      # quicker, noisier

Each simulated period has 10 numeric features (normal, lognormal, rounded "ages",
gamma) and 3 categorical features (2-5 levels, one rare), compared with a reference
period of 5 x n rows (at least 2,000) drawn from the same distributions:

* no drift: a *false alarm* is a period where at least one feature is drifted after
  Benjamini-Hochberg at the 5% level (the family-wise rate over the 13 features; under
  no drift at all, BH controls exactly this at the FDR level). Target: <= 5% at every n.
* known shift: the first numeric feature (standard normal) is shifted by 0.1 or 0.2
  SD; power = share of periods in which that feature is drifted.
* for contrast, the naive fixed rule "PSI > 0.1 on any feature" (and "PSI > 0.2").

A fresh reference sample is drawn for every period, so reference noise is included.
The 95% Monte-Carlo interval of each rate is printed (Wilson).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from clinval.drift import DriftSettings, compare_period, label_prevalence
from clinval.profile import build_reference_profile

NUMERIC = [f"x{i}" for i in range(10)]
CATEGORICAL = ["sex", "smoker", "site"]


def simulate(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    columns = {}
    for i, name in enumerate(NUMERIC):
        kind = i % 4
        if kind == 0:
            columns[name] = rng.normal(shift if i == 0 else 0.0, 1.0, n)
        elif kind == 1:
            columns[name] = rng.lognormal(0.0, 0.5, n)
        elif kind == 2:
            columns[name] = np.round(rng.normal(62, 11, n))
        else:
            columns[name] = rng.gamma(2.0, 1.0, n)
    columns["sex"] = rng.choice(["f", "m"], n)
    columns["smoker"] = rng.choice(["never", "former", "current", "nk"], n, p=[0.5, 0.25, 0.2, 0.05])
    columns["site"] = rng.choice(["A", "B", "C", "D", "E"], n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    return pd.DataFrame(columns)


def run(n: int, reps: int, seed: int) -> dict[str, tuple[int, int]]:
    rng = np.random.default_rng(seed)
    settings = DriftSettings()
    m = max(2_000, 5 * n)
    counts = {key: 0 for key in ("fdr_any", "psi01_any", "psi02_any", "power_0.1", "power_0.2", "naive_power_0.1", "naive_power_0.2")}
    for _ in range(reps):
        reference = simulate(rng, m)
        profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL, n_threads=1)
        null = compare_period(profile, simulate(rng, n), settings=settings, n_threads=1)
        counts["fdr_any"] += bool(null["drifted"].any())
        counts["psi01_any"] += bool((null["psi"] > 0.1).any())
        counts["psi02_any"] += bool((null["psi"] > 0.2).any())
        for shift in (0.1, 0.2):
            shifted = compare_period(profile, simulate(rng, n, shift=shift), settings=settings, n_threads=1)
            first = shifted.iloc[0]
            counts[f"power_{shift}"] += bool(first["drifted"])
            counts[f"naive_power_{shift}"] += bool(first["psi"] > 0.1)
    return {key: (value, reps) for key, value in counts.items()}


def _rate(hit: int, total: int) -> str:
    estimate = label_prevalence(np.r_[np.ones(hit), np.zeros(total - hit)])
    return f"{hit / total:6.1%} [{estimate.ci_low:5.1%}, {estimate.ci_high:5.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--reps", type=int, default=1_000, help="simulated periods per n (default 1000)")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    print(f"13 features per period (10 numeric, 3 categorical), BH at 5%, {args.reps} periods per n\n")
    header = (f"{'n':>7} | {'false alarms (BH)':>24} | {'naive PSI>0.1 any':>24} | {'naive PSI>0.2 any':>24} | "
              f"{'power 0.1 SD':>24} | {'power 0.2 SD':>24} | {'naive PSI>0.1, 0.2 SD':>24}")
    print(header)
    print("-" * len(header))
    for n in args.n:
        start = time.perf_counter()
        r = run(n, args.reps, args.seed + n)
        print(f"{n:>7,d} | {_rate(*r['fdr_any']):>24} | {_rate(*r['psi01_any']):>24} | {_rate(*r['psi02_any']):>24} | "
              f"{_rate(*r['power_0.1']):>24} | {_rate(*r['power_0.2']):>24} | {_rate(*r['naive_power_0.2']):>24}"
              f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    print("\nTarget: false alarms <= 5% at every n. Brackets: 95% Wilson interval of the simulation.")


if __name__ == "__main__":
    main()
