"""A real Prometheus scrapes `clinval serve` on loopback; a clinval metric is read back
through Prometheus's HTTP API. Needs the `prometheus` binary (Debian package
`prometheus`; `deploy/ci-install-prometheus.sh` installs it, and CI runs that script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
from live_helpers import free_port, start_server

MSG_NO_PROMETHEUS = "the prometheus binary is not installed: run `bash deploy/ci-install-prometheus.sh` (Debian package prometheus)"


def _query(url: str, expression: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=5.0)
    response.raise_for_status()
    return response.json()["data"]["result"]


def test_prometheus_scrapes_the_service_and_answers_a_clinval_query(live_root, study_records, tmp_path):
    binary = shutil.which("prometheus")
    assert binary is not None, MSG_NO_PROMETHEUS
    (live_root.root / "reports").mkdir()
    record = {"values": {"performance": [{"metric": "O/E", "period": "1991", "value": 0.78, "lower": 0.64, "upper": 0.96, "status": "ok"}]}}
    (live_root.root / "reports" / "02_drift_analysis.json").write_text(json.dumps(record))
    server = start_server(live_root)
    prometheus = None
    try:
        server.wait_ready()
        for _ in range(3):
            assert httpx.post(f"{server.url}/v1/predict", json={"records": study_records[:5]}, timeout=30).status_code == 200
        port = free_port()
        config = tmp_path / "prometheus.yml"
        target = server.url.removeprefix("http://")
        config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: clinval\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        log = open(tmp_path / "prometheus.log", "wb")
        prometheus = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        predictions = oe = []
        deadline = time.monotonic() + 120  # a bound on waiting, not an assertion on time
        while time.monotonic() < deadline and not (predictions and oe):
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                predictions = _query(url, 'clinval_predictions_total{job="clinval"}')
                oe = _query(url, 'clinval_observed_expected{period="1991"}')
            except (httpx.TransportError, httpx.HTTPStatusError):
                pass  # not listening yet, or 503 while its storage starts
            time.sleep(0.5)
        assert predictions, f"Prometheus never scraped clinval: {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        assert float(predictions[0]["value"][1]) == 15.0
        assert float(oe[0]["value"][1]) == 0.78
        up = _query(url, 'up{job="clinval"}')
        assert float(up[0]["value"][1]) == 1.0
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        server.stop()
