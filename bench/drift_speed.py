"""Speed and memory of the drift engine against evidently 0.7 and naive scipy.

    uv run python bench/drift_speed.py                       # 100k and 1M rows, all engines
    uv run python bench/drift_speed.py --rows 100000 --engines clinval scipy

Data: 20 numeric (float64, ~1% missing, mixed shapes, small shifts) + 5 categorical
(pandas category dtype, 6-12 levels, one unseen level in the current period) columns,
the same number of rows in the reference and the current period, seeded.

Each engine runs in its own subprocess (fresh interpreter): the data are generated, the
engine's imports done, the peak resident set size (VmHWM) reset to the current RSS via
``/proc/self/clear_refs``, the engine runs, and the peak RSS growth is reported as
"extra" memory (it includes everything the engine keeps, e.g. clinval's profile). "data" is the
in-memory size of both frames (``DataFrame.memory_usage(deep=True)``). Target (issue 3):
clinval at 1M rows <= 2 s with data + extra <= 1.5 x data.

Engines
-------
clinval        build_reference_profile + compare_period (all statistics), 2 threads
clinval_1thread  the same with n_threads=1 (threads only pay when a second core is free)
scipy          ks_2samp + wasserstein_distance per numeric, chi2_contingency per categorical
evidently      Report([DataDriftPreset()]) (its defaults: Wasserstein / JS at this size)
evidently_same ValueDrift per column with our methods: ks, wasserstein, psi (numeric);
               chisquare, jensenshannon, psi (categorical)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 20, 5
ENGINES = ("clinval", "clinval_1thread", "scipy", "evidently", "evidently_same")


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    numeric = [f"x{i:02d}" for i in range(N_NUMERIC)]
    categorical = [f"c{i}" for i in range(N_CATEGORICAL)]
    frames = []
    for period, shift in (("reference", 0.0), ("current", 1.0)):
        columns = {}
        for i, name in enumerate(numeric):
            kind = i % 4
            if kind == 0:
                x = rng.normal(0.01 * i * shift, 1.0, rows)
            elif kind == 1:
                x = rng.lognormal(0.0 + 0.005 * i * shift, 0.5, rows)
            elif kind == 2:
                x = np.round(rng.normal(60 + 0.1 * i * shift, 12, rows))  # age-like, ties
            else:
                x = rng.gamma(2.0 + 0.02 * shift, 1.0, rows)
            x[rng.random(rows) < 0.01] = np.nan
            columns[name] = x
        for i, name in enumerate(categorical):
            levels = [f"L{j}" for j in range(6 + i)]
            p = np.linspace(1, 2, len(levels))
            p /= p.sum()
            values = rng.choice(len(levels), rows, p=p)
            labels = levels + (["NEW"] if shift else [])
            if shift:
                values[rng.random(rows) < 0.001] = len(levels)
            columns[name] = pd.Categorical.from_codes(values, categories=labels)
        frames.append(pd.DataFrame(columns))
    return frames[0], frames[1], numeric, categorical


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS, then reset VmHWM (peak RSS) to the current RSS.

    Without the trim, memory freed while generating the data stays in the process and an
    engine could reuse it without raising the RSS (its use would be invisible).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def run_engine(engine: str, rows: int) -> dict:
    reference, current, numeric, categorical = make_data(rows)
    data_bytes = int(reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum())
    if engine.startswith("evidently"):  # import before measuring: its import is not the engine's work
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift
        from evidently.presets import DataDriftPreset
    else:
        from scipy import stats  # noqa: F401

        from clinval.drift import compare_period  # noqa: F401
    reset = _reset_peak_rss()
    rss_before = _status_bytes("VmRSS")
    peak_before = _status_bytes("VmHWM")
    detail: dict = {}
    start = time.perf_counter()
    if engine.startswith("clinval"):
        from clinval.drift import DriftSettings, compare_period
        from clinval.profile import build_reference_profile

        threads = 1 if engine == "clinval_1thread" else 2
        t0 = time.perf_counter()
        profile = build_reference_profile(reference, numeric=numeric, categorical=categorical, n_threads=threads)
        t1 = time.perf_counter()
        result = compare_period(profile, current, settings=DriftSettings(), n_threads=threads)
        t2 = time.perf_counter()
        detail = {"profile_s": t1 - t0, "compare_s": t2 - t1,
                  "profile_bytes": sum(p.nbytes for p in profile.numeric.values()),
                  "drifted": int(result.drifted.sum()), "statuses": sorted(set(result.status))}
    elif engine == "scipy":
        from scipy import stats

        for name in numeric:
            a, b = reference[name].dropna().to_numpy(), current[name].dropna().to_numpy()
            stats.ks_2samp(a, b)
            stats.wasserstein_distance(a, b)
        for name in categorical:
            table = pd.crosstab(
                np.r_[np.zeros(rows, int), np.ones(rows, int)],
                pd.concat([reference[name].astype(str), current[name].astype(str)], ignore_index=True),
            )
            stats.chi2_contingency(table.to_numpy(), correction=False)
    else:
        warnings.simplefilter("ignore")
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        ref_ds = Dataset.from_pandas(reference, data_definition=definition)
        cur_ds = Dataset.from_pandas(current, data_definition=definition)
        if engine == "evidently":
            metrics = [DataDriftPreset()]
        else:
            metrics = [ValueDrift(column=c, method=m) for c in numeric for m in ("ks", "wasserstein", "psi")]
            metrics += [ValueDrift(column=c, method=m) for c in categorical for m in ("chisquare", "jensenshannon", "psi")]
        Report(metrics).run(current_data=cur_ds, reference_data=ref_ds)
    seconds = time.perf_counter() - start
    # Peak RSS growth over the RSS just before the engine ran (peak reset there); if the
    # kernel refuses the reset, growth over the earlier peak is a lower bound.
    peak = _status_bytes("VmHWM")
    extra = max(0, peak - (rss_before if reset else max(rss_before, peak_before)))
    if engine.startswith("clinval"):  # second, traced run: numpy reports its buffers to tracemalloc
        del profile, result
        tracemalloc.start()
        profile = build_reference_profile(reference, numeric=numeric, categorical=categorical, n_threads=threads)
        compare_period(profile, current, settings=DriftSettings(), n_threads=threads)
        detail["traced_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"engine": engine, "rows": rows, "seconds": seconds, "data_bytes": data_bytes,
            "extra_bytes": extra, "peak_rss_bytes": peak, "rss_before_bytes": rss_before,
            "peak_reset": reset, **detail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_engine(args.worker, args.rows[0])))
        return
    results = []
    for rows in args.rows:
        for engine in args.engines:
            done = subprocess.run(
                [sys.executable, __file__, "--worker", engine, "--rows", str(rows)],
                capture_output=True, text=True, check=False,
            )
            if done.returncode != 0:
                print(f"{engine} at {rows} rows failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"  {engine:15s} {rows:>9,d} rows  {result['seconds']:8.2f} s", flush=True)
    print()
    header = f"{'rows':>9} {'engine':15s} {'seconds':>9} {'x clinval':>10} {'data MB':>8} {'extra MB':>9} {'(data+extra)/data':>18}"
    print(header)
    print("-" * len(header))
    for rows in args.rows:
        base = next((r["seconds"] for r in results if r["rows"] == rows and r["engine"] == "clinval"), None)
        for r in (r for r in results if r["rows"] == rows):
            ratio = f"{r['seconds'] / base:10.1f}" if base else f"{'':>10}"
            total = (r["data_bytes"] + r["extra_bytes"]) / r["data_bytes"]
            print(f"{rows:>9,d} {r['engine']:15s} {r['seconds']:9.2f} {ratio} {r['data_bytes'] / 1e6:8.0f} "
                  f"{r['extra_bytes'] / 1e6:9.0f} {total:18.2f}")
        for clin in (r for r in results if r["rows"] == rows and r["engine"].startswith("clinval")):
            print(f"{'':>9} {clin['engine']} detail: profile {clin['profile_s']:.2f} s + compare {clin['compare_s']:.2f} s; "
                  f"tracemalloc peak {clin['traced_peak_bytes'] / 1e6:.0f} MB "
                  f"(-> {(clin['data_bytes'] + clin['traced_peak_bytes']) / clin['data_bytes']:.2f} x data); "
                  f"sorted reference values kept in the profile {clin['profile_bytes'] / 1e6:.0f} MB; "
                  f"{clin['drifted']} of 25 features drifted")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
