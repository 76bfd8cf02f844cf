"""Validity of the drift decisions: per-period false alarms and power, by simulation.

    .venv/bin/python bench/drift_validity.py                  # n = 100, 1,000, 10,000; 500 periods each
    .venv/bin/python bench/drift_validity.py --reps 200       # quicker, noisier
    .venv/bin/python bench/drift_validity.py --n 1000         # one size
    .venv/bin/python bench/drift_validity.py --parts ks       # only the tie-aware KS (2,000 periods per n)

Each simulated period has 10 numeric features (normal, lognormal, rounded "ages", gamma;
the first gamma feature is 30% missing) and 4 categorical features (2-5 levels with a rare
one, and a 40-level "ward" with 10 rare levels of 0.2% each, so the reference often misses
a level that then shows up in production although nothing changed), compared with a
reference period of 5 x n rows (at least 2,000) drawn from the same distributions. A fresh
reference is drawn for every period, so reference noise is included.

* no drift: a *false alarm* is a period where anything is flagged after Benjamini-Hochberg
  at 5% (before: a drifted distribution; after: also a changed missing rate or a new
  category, all in one family). Target <= 5% at every n. The naive rule "PSI > 0.1 on any
  feature" is shown for contrast.
* shift: the first numeric feature (standard normal) moves by 0.1 or 0.2 SD; power =
  share of periods in which it is flagged.
* item 5, missing rate: the 30%-missing feature is 45% missing in production; power =
  share of periods in which that feature is flagged (target >= 0.9 at n = 1,000).
* item 6, new category: 1% of the production rows of "site" (5 levels) or "ward" (40
  levels) take a value never seen in the reference; power as above (target >= 0.9 at
  n = 1,000). At n = 1,000 the simulation is also run with a reference of only 1,000
  rows: ten new values all landing in production then has chance 2^-10 under no drift,
  which after BH over ~18 tests is just enough, so power there is limited by the data.
* KS on heavily tied integer labs (about 35 distinct values), one test at 5%: rejection
  rate under no drift (scipy's p-value is conservative with ties) and power for a 0.1 SD
  shift, scipy's p-value ("before") against the tie-aware permutation p-value ("after").

"before" is clinval's drift module at commit f716744 (loaded from git), run on the same
simulated periods. Brackets: 95% Monte Carlo interval (Wilson).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from _validity import Rate, Row, previous, print_table
from clinval.drift import DriftSettings, compare_period
from clinval.profile import build_reference_profile

NUMERIC = [f"x{i}" for i in range(10)]
CATEGORICAL = ["sex", "smoker", "site", "ward"]
MISSING_FEATURE = "x3"  # gamma, 30% missing in every period
WARD_SHARES = np.r_[np.full(30, 0.98 / 30), np.full(10, 0.002)]


def simulate(rng: np.random.Generator, n: int, *, shift: float = 0.0, missing: float = 0.30,
             new_site: float = 0.0, new_ward: float = 0.0) -> pd.DataFrame:
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
    columns[MISSING_FEATURE][rng.random(n) < missing] = np.nan
    columns["sex"] = rng.choice(["f", "m"], n)
    columns["smoker"] = rng.choice(["never", "former", "current", "nk"], n, p=[0.5, 0.25, 0.2, 0.05])
    site = rng.choice(["A", "B", "C", "D", "E"], n, p=[0.3, 0.25, 0.2, 0.15, 0.1]).astype(object)
    site[rng.random(n) < new_site] = "NEW"
    columns["site"] = site
    ward = rng.choice([f"w{k:02d}" for k in range(WARD_SHARES.size)], n, p=WARD_SHARES).astype(object)
    ward[rng.random(n) < new_ward] = "NEW"
    columns["ward"] = ward
    return pd.DataFrame(columns)


def _any_flag(result: pd.DataFrame) -> bool:
    flags = result["drifted"].to_numpy(copy=True)
    for column in ("missing_drifted", "new_level_drifted"):
        if column in result:
            flags |= result[column].to_numpy(dtype=bool)
    return bool(flags.any())


def _flagged(result: pd.DataFrame, feature: str) -> bool:
    row = result.set_index("feature").loc[feature]
    return bool(row["drifted"] or row.get("missing_drifted", False) or row.get("new_level_drifted", False))


def run(n: int, reps: int, seed: int, *, reference_ratio: int = 5) -> list[Row]:
    old = previous("drift")
    rng = np.random.default_rng(seed)
    settings = DriftSettings()
    m = max(2_000, reference_ratio * n) if reference_ratio > 1 else n
    tally = {k: (Rate(), Rate()) for k in ("null", "power 0.1", "power 0.2", "missing", "new site", "new ward")}
    naive = Rate()
    start = time.perf_counter()
    for _ in range(reps):
        reference = simulate(rng, m)
        profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL, n_threads=1)
        periods = {"null": simulate(rng, n), "power 0.1": simulate(rng, n, shift=0.1),
                   "power 0.2": simulate(rng, n, shift=0.2), "missing": simulate(rng, n, missing=0.45),
                   "new site": simulate(rng, n, new_site=0.01), "new ward": simulate(rng, n, new_ward=0.01)}
        feature = {"power 0.1": "x0", "power 0.2": "x0", "missing": MISSING_FEATURE, "new site": "site", "new ward": "ward"}
        for key, period in periods.items():
            for k, module in enumerate((old, None)):
                fn = module.compare_period if module is not None else compare_period
                result = fn(profile, period, settings=settings, n_threads=1)
                tally[key][k].add(_any_flag(result) if key == "null" else _flagged(result, feature[key]))
                if key == "null" and module is None:
                    naive.add(bool((result["psi"] > 0.1).any()))
    took = time.perf_counter() - start
    scenario = f"n = {n:,}, reference {m:,} ({took:.0f} s)"
    return [
        Row("FDR", scenario, "no drift: any flag in the period", *tally["null"], "<= 5%"),
        Row("FDR", scenario, "no drift: naive PSI > 0.1 on any", "", naive, "(for contrast)"),
        Row("FDR", scenario, "0.1 SD shift flagged (power)", *tally["power 0.1"], "(higher is better)"),
        Row("FDR", scenario, "0.2 SD shift flagged (power)", *tally["power 0.2"], "(higher is better)"),
        Row("5", scenario, "30% -> 45% missing flagged", *tally["missing"], ">= 90% at n = 1,000"),
        Row("6", scenario, "new site (of 5) in 1% flagged", *tally["new site"], ">= 90% at n = 1,000"),
        Row("6", scenario, "new ward (of 40) in 1% flagged", *tally["new ward"], ">= 90% at n = 1,000"),
    ]


def tied_labs(reps: int, seed: int) -> list[Row]:
    """KS on an integer lab with ~35 distinct values: scipy's p-value against the tie-aware one."""
    from scipy import stats

    rows = []
    for n in (100, 1_000):
        m = max(2_000, 5 * n)
        rng = np.random.default_rng(seed + n)
        null, power = (Rate(), Rate()), (Rate(), Rate())
        spent = [0.0, 0.0]
        for _ in range(reps):
            reference = pd.DataFrame({"lab": np.round(rng.normal(42, 5, m))})
            profile = build_reference_profile(reference, numeric=["lab"], categorical=[], n_threads=1)
            for rate, shift in ((null, 0.0), (power, 0.1)):
                current = pd.DataFrame({"lab": np.round(rng.normal(42 + 5 * shift, 5, n))})
                t0 = time.perf_counter()
                p_scipy = stats.ks_2samp(reference["lab"], current["lab"]).pvalue
                t1 = time.perf_counter()
                p_ties = compare_period(profile, current, n_threads=1)["p_value"].iloc[0]
                t2 = time.perf_counter()
                spent[0] += t1 - t0
                spent[1] += t2 - t1
                rate[0].add(p_scipy <= 0.05)
                rate[1].add(p_ties <= 0.05)
        scenario = f"integer lab (~35 values), n = {n:,}, reference {m:,}"
        rows.append(Row("KS", scenario, "no drift: rejected at 5% (one test)", *null, "5%"))
        rows.append(Row("KS", scenario, "0.1 SD shift rejected (power)", *power, "(higher is better)"))
        per_test = [1000 * s / (2 * reps) for s in spent]
        rows.append(Row("KS", scenario, "ms per test (scipy / whole feature row)", f"{per_test[0]:.1f} ms", f"{per_test[1]:.1f} ms", "not slow"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--reps", type=int, default=500, help="simulated periods per n (default 500)")
    parser.add_argument("--ks-reps", type=int, default=2_000, help="simulated periods per n for the KS part (default 2000)")
    parser.add_argument("--parts", nargs="+", default=["drift", "ks"], choices=["drift", "ks"])
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    if "drift" in args.parts:
        rows = []
        for n in args.n:
            rows += run(n, args.reps, args.seed + n)
        if 1_000 in args.n:  # the harder case: a reference no larger than one period
            rows += run(1_000, args.reps, args.seed + 1, reference_ratio=1)
        print_table(rows, title=f"Drift decisions, items 5 and 6 (14 features per period, BH at 5%, {args.reps} periods per n)")
    if "ks" in args.parts:
        print_table(tied_labs(args.ks_reps, args.seed), title=f"KS on heavily tied values ({args.ks_reps} periods per n)")


if __name__ == "__main__":
    main()
