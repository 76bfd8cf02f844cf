"""Done when: SIGKILL under load loses no acknowledged prediction and leaves no torn record.

A real `clinval serve` on loopback takes concurrent requests from 8 clients; it is
killed with SIGKILL mid-load, restarted (recovery seals what it left), and every
prediction a client received an answer for must be in the export and in a segment
sealed by a `prediction_batch` entry of a ledger that verifies deeply.
"""

from __future__ import annotations

import threading
import time

import httpx
from live_helpers import start_server

from clinval.ledger import verify
from clinval.predlog import export_predictions, read_wal

CLIENTS = 8
KILL_AFTER = 400  # acknowledged predictions before the kill


def test_sigkill_mid_load_loses_no_acknowledged_prediction(live_root, study_records):
    server = start_server(live_root, "--segment-records", "150")
    acknowledged: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    try:
        server.wait_ready()

        def client(k: int) -> None:
            with httpx.Client(timeout=30.0) as http:
                for n in range(10_000):  # bounded; the kill ends it long before
                    size = 1 + (n + k) % 4
                    records = [{**r, "record_id": f"c{k}-{n}-{i}"} for i, r in enumerate(study_records[(n * 7 + k) % 4000:][:size])]
                    try:
                        response = http.post(f"{server.url}/v1/predict", json={"records": records})
                    except httpx.TransportError:
                        return  # the server died mid-request: this one was never acknowledged
                    if response.status_code != 200:
                        failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                        return
                    with lock:
                        acknowledged.extend(p["prediction_id"] for p in response.json()["predictions"])
                        if len(acknowledged) >= KILL_AFTER:
                            enough.set()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        assert enough.wait(timeout=300), f"too few answers before the kill: {len(acknowledged)} {failures}"
        server.kill()
        for thread in threads:
            thread.join()
        with lock:
            acked = set(acknowledged)
        assert not failures

        # what the killed process left: complete lines, at most a torn tail, never damage before a good line
        left = list((live_root.log_dir / "wal").glob("*.jsonl"))
        for path in left:
            read_wal(path)  # raises LogCorrupt on damage that is not an interrupted write

        started = time.monotonic()
        restarted = start_server(live_root)
        try:
            health = restarted.wait_ready()
            ready_seconds = time.monotonic() - started  # reported, never asserted
            # while the restarted service runs: everything the killed one answered is sealed already
            frame = export_predictions(directory=live_root.log_dir, root=live_root.root, ledger=live_root.open_ledger(),
                                       include_open=False)
            result = verify(live_root.ledger, deep=True, root=live_root.root,
                            checkpoint=live_root.root / "audit" / "checkpoints" / "latest.json")
        finally:
            restarted.stop()
    finally:
        server.stop()

    assert result.ok, str(result)
    missing = acked - set(frame["prediction_id"])
    assert not missing, f"{len(missing)} acknowledged predictions lost, e.g. {sorted(missing)[:3]}"
    assert frame["sealed"].all() and frame["ledger_seq"].notna().all()
    assert frame["prediction_id"].is_unique
    batches = [e for e in live_root.open_ledger().entries() if e.kind == "prediction_batch"]
    assert sum(e.body["count"] for e in batches) == len(frame)
    recovered = health["log"]["recovered"]
    assert recovered["segments"] >= 1 and recovered["records"] >= 1
    print(f"\nkill -9 under load: {len(acked)} acknowledged, {len(frame)} logged and sealed "
          f"({len(frame) - len(acked)} answered-but-unacknowledged kept), 0 lost; {len(left)} WAL segment(s) left, "
          f"{recovered['torn_bytes']} torn bytes dropped; recovery sealed {recovered['records']} predictions in "
          f"{recovered['segments']} segment(s) in {recovered['seconds']:.3f} s; restart to healthy {ready_seconds:.1f} s")
