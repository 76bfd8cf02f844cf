"""How fast `clinval serve` answers, against the usual first attempt, with the same client.

Run: ``uv run python bench/serve_speed.py [--requests 4000] [--batches 160] [--concurrency 8]``

Fits the locked model on the embedded study, records it in a fresh signed ledger in a
temporary folder, then runs two servers, one after the other, each in its own process on
loopback with uvicorn (uvloop, httptools):

* **clinval**: ``clinval serve`` -- request model generated from the study schema, the
  model compiled to numpy, every prediction appended to the prediction log and flushed
  (group commit) *before* the answer;
* **baseline**: a plain FastAPI endpoint with a pydantic model of the same fields that
  builds a DataFrame and calls the scikit-learn pipeline's ``predict_proba``; it logs
  nothing.

The same httpx client (one process, asyncio, ``--concurrency`` connections) sends
single-record requests and 1,000-record batches of real study records and prints
throughput and p50/p99 latency for each, then the ratios. The batch figure is given at
concurrency 1 (the latency of one batch) and at ``--concurrency`` (throughput).
"""

# no `from __future__ import annotations`: FastAPI must see the baseline's local Body class
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "live"))

from live_helpers import free_port, make_live_root, start_server  # noqa: E402

BATCH = 1000


# ---------------------------------------------------------------------------- baseline server
def baseline_app(model_dir: str, study_path: str):
    """The usual first attempt: pydantic fields, a DataFrame, ``predict_proba``."""
    import pandas as pd
    from fastapi import FastAPI
    from pydantic import BaseModel, create_model

    from clinval import data, model

    pipeline, _ = model.load_model(model_dir)
    schema = data.study_from_params(yaml.safe_load(Path(study_path).read_text())).schema
    fields = {name: (float | None, ...) for name in schema.numeric} | {name: (str | None, ...) for name in schema.categorical}
    Record = create_model("Record", **fields)

    class Body(BaseModel):
        records: list[Record]  # type: ignore[valid-type]

    app = FastAPI()

    @app.post("/predict")
    def predict(body: Body) -> dict:
        frame = model.feature_frame(pd.DataFrame([r.model_dump() for r in body.records]), schema)
        risk = pipeline.predict_proba(frame)[:, 1]
        return {"predictions": [{"risk": float(r)} for r in risk]}

    return app


def run_baseline(port: int, model_dir: str, study_path: str) -> None:
    import uvicorn

    uvicorn.run(baseline_app(model_dir, study_path), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


# ---------------------------------------------------------------------------- client
async def _load(url: str, bodies: list[bytes], total: int, concurrency: int) -> tuple[float, list[float]]:
    """Send ``total`` requests over ``concurrency`` connections; return (seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def worker() -> None:
            for n in counter:
                started = time.perf_counter()
                response = await client.post(url, content=bodies[n % len(bodies)], headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")

        for _ in range(min(20, total)):  # warm up connections and code paths
            await client.post(url, content=bodies[0], headers={"content-type": "application/json"})
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, bodies: list[bytes], total: int, concurrency: int, pid: int) -> dict[str, float]:
    cpu, client_cpu = cpu_seconds(pid), time.process_time()
    seconds, latencies = asyncio.run(_load(url, bodies, total, concurrency))
    client_cpu = time.process_time() - client_cpu
    return {"requests": total, "per_second": total / seconds, "p50_ms": 1e3 * float(np.percentile(latencies, 50)),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99)), "mean_ms": 1e3 * statistics.fmean(latencies),
            "server_cpu_ms": 1e3 * (cpu_seconds(pid) - cpu) / (total + min(20, total)),
            "client_cpu_ms": 1e3 * client_cpu / (total + min(20, total))}


def wait_for(url: str, process: subprocess.Popen) -> None:
    for _ in range(1200):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="single-record requests per server")
    parser.add_argument("--batches", type=int, default=160, help="1,000-record requests per server and concurrency")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-server", nargs=3, metavar=("PORT", "MODEL_DIR", "STUDY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        port, model_dir, study = args.baseline_server
        run_baseline(int(port), model_dir, study)
        return

    import pandas as pd

    from clinval import data, model, sources

    study_params = yaml.safe_load((REPO / "params" / "study.yaml").read_text())
    study = data.study_from_params(study_params)
    source_root = REPO
    if study.embedded is not None and not (REPO / study.source_path).exists():
        source_root = Path(tempfile.mkdtemp(prefix="clinval-bench-study-"))  # the embedded table, written as `make` would
        sources.write_embedded(study.embedded, study.source_path, root=source_root)
    prepared = data.prepare(study, root=source_root)
    pipeline, card = model.fit_locked_model(prepared, model.recipe_from_params(yaml.safe_load((REPO / "params" / "model.yaml").read_text())))
    features = prepared.schema.features
    rows = model.feature_frame(pd.concat([prepared.reference, prepared.production], ignore_index=True), prepared.schema)
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in rows.to_dict(orient="records")]
    singles = [json.dumps({"records": [r]}).encode() for r in records[:500]]
    batches = [json.dumps({"records": records[i : i + BATCH]}).encode() for i in range(0, 3 * BATCH, BATCH)]
    print(f"{len(records)} study records, {len(features)} features; client: httpx, concurrency {args.concurrency}; "
          f"{args.requests} single-record requests and {args.batches} batches of {BATCH} per server", flush=True)

    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="clinval-serve-bench-") as tmp:
        live = make_live_root(Path(tmp), pipeline=pipeline, card=card, study=study_params)
        servers = {
            "clinval": lambda port: start_server(live, port=port).process,
            "baseline": lambda port: subprocess.Popen(
                [sys.executable, __file__, "--baseline-server", str(port), str(live.root / "models" / "locked"),
                 str(live.root / "params" / "study.yaml")], cwd=live.root),
        }
        for name, start in servers.items():
            port = free_port()
            process = start(port)
            path = "/v1/predict" if name == "clinval" else "/predict"
            url = f"http://127.0.0.1:{port}{path}"
            try:
                wait_for(f"http://127.0.0.1:{port}/docs", process)
                results[name] = {
                    "single": measure(url, singles, args.requests, args.concurrency, process.pid),
                    "batch c=1": measure(url, batches, max(20, args.batches // 4), 1, process.pid),
                    f"batch c={args.concurrency}": measure(url, batches, args.batches, args.concurrency, process.pid),
                }
            finally:
                process.terminate()
                process.wait(timeout=60)
            for kind, figures in results[name].items():
                print(f"{name:<9} {kind:<11} {figures['per_second']:8.1f} req/s   p50 {figures['p50_ms']:7.2f} ms   "
                      f"p99 {figures['p99_ms']:7.2f} ms   server CPU {figures['server_cpu_ms']:6.2f} ms/request   client CPU {figures['client_cpu_ms']:5.2f}", flush=True)
        logged = sum(1 for _ in (live.log_dir / "segments").glob("*.parquet"))
        print(f"clinval sealed {logged} log segment(s) in {live.ledger.relative_to(live.root)}")
    for kind in results["clinval"]:
        ratio = results["clinval"][kind]["per_second"] / results["baseline"][kind]["per_second"]
        print(f"throughput ratio clinval/baseline, {kind}: {ratio:.1f}x")
    single = results["clinval"]["single"]
    batch = results["clinval"]["batch c=1"]
    print(f"goals: single-record throughput >= 5x baseline: {single['per_second'] / results['baseline']['single']['per_second']:.1f}x; "
          f"single p99 <= 20 ms: {single['p99_ms']:.1f} ms; 1,000-record batch <= 50 ms: p50 {batch['p50_ms']:.1f} ms, p99 {batch['p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
