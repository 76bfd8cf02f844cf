"""A log that cannot write makes the service answer 503, never 200 without logging.

The service runs with a file-size limit (RLIMIT_FSIZE): once the open segment reaches
it, the kernel refuses the write (EFBIG), as a full disk would (ENOSPC). Every 200
answer must be in the log, and nothing else.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import httpx
import pandas as pd
from live_helpers import start_server

from clinval.ledger import verify

LIMIT_BYTES = 48 * 1024  # the ledger and the sealed segments stay below it; the open segment does not


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def test_a_full_log_answers_503_and_every_200_is_logged(live_root, study_records):
    assert live_root.ledger.stat().st_size < LIMIT_BYTES // 4
    server = start_server(live_root, preexec_fn=_limit_file_size)
    acknowledged: list[str] = []
    statuses: list[int] = []
    try:
        server.wait_ready()
        with httpx.Client(timeout=30.0) as http:
            for n in range(2000):  # bounded: the limit is reached after a few hundred
                response = http.post(f"{server.url}/v1/predict",
                                     json={"records": [{**study_records[n], "record_id": f"r{n}"}]})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acknowledged += [p["prediction_id"] for p in response.json()["predictions"]]
                else:
                    assert response.status_code == 503 and "risk" not in response.text
                    assert "nothing was answered" in response.json()["detail"]
                    health = http.get(f"{server.url}/healthz")
                    assert health.status_code == 503 and health.json()["log"]["last_error"]
                    metrics = http.get(f"{server.url}/metrics").text
                    assert "clinval_log_up 0.0" in metrics and 'clinval_requests_total{status="503"} 1.0' in metrics
                    break
            # the next request starts a new segment, which has room again
            after = http.post(f"{server.url}/v1/predict", json={"records": [{**study_records[0], "record_id": "after"}]})
            assert after.status_code == 200
            acknowledged += [p["prediction_id"] for p in after.json()["predictions"]]
    finally:
        server.stop()  # graceful: the open segment is sealed
    assert statuses[-1] == 503, "the file-size limit was never reached"
    export = live_root.root / "export.parquet"
    subprocess.run([sys.executable, "-m", "clinval", "predictions", "export", "--out", str(export)],
                   cwd=live_root.root, env=live_root.env(), check=True, capture_output=True)
    logged = pd.read_parquet(export)
    assert sorted(logged["prediction_id"]) == sorted(acknowledged)
    assert logged["sealed"].all()
    result = verify(live_root.ledger, deep=True, root=live_root.root)
    assert result.ok, str(result)
