"""Metrics for the dashboards hospitals already run (Prometheus text format, Grafana).

Two sources, one format (``prometheus-client``):

* the service's own health (:class:`ServiceMetrics`, served at ``GET /metrics``):
  requests by status, latency, predictions answered, unseen categories, how long a
  prediction waits for its flush (durability lag), how long the oldest prediction has
  waited to be sealed in the ledger, and the model in force;
* the monitored metrics of the latest evidence records (:class:`RecordsCollector`):
  observed/expected events and AUROC with their CI bounds, the label-free (CBPE) AUROC
  estimate, drifted-feature counts, each labelled by production period, and the alerts
  still waiting for a decision.

``clinval metrics export`` writes the records' metrics and the log's state on disk to a
file for node_exporter's textfile collector (:func:`export_textfile`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from clinval.vocabulary import REFERENCE, STATUS_OK

if TYPE_CHECKING:
    from clinval.predlog import LogStats

__all__ = ["RecordsCollector", "ServiceMetrics", "export_textfile", "log_families", "records_metrics"]

DRIFT_RECORD = "02_drift_analysis.json"
"""The evidence record whose monitored metrics are exported."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_PERFORMANCE = {"O/E": "clinval_observed_expected", "AUROC": "clinval_auroc"}
_HELP = {
    "O/E": "Observed/expected events per production period (1 = calibrated in the large)",
    "AUROC": "Area under the ROC curve per labelled production period",
}


# ---------------------------------------------------------------------------- records
def records_metrics(*, reports_dir: str | os.PathLike[str], approvals_dir: str | os.PathLike[str] | None = None) -> list[Metric]:
    """The monitored metrics of the latest evidence records as Prometheus families.

    Missing records give no families (the pipeline has not run yet), not an error.
    """
    reports = Path(reports_dir)
    record = _read_json(reports / DRIFT_RECORD)
    families: list[Metric] = []
    if record is not None:
        values = record.get("values") or {}
        for metric, name in _PERFORMANCE.items():
            value, lower, upper = (GaugeMetricFamily(name + suffix, _HELP[metric] + text, labels=["period"])
                                   for suffix, text in (("", ""), ("_lower", ": lower 95% bound"), ("_upper", ": upper 95% bound")))
            for row in values.get("performance") or []:
                if row.get("metric") == metric and row.get("status") == STATUS_OK and row.get("period") != REFERENCE:
                    for family, key in ((value, "value"), (lower, "lower"), (upper, "upper")):
                        if _finite(row.get(key)):
                            family.add_metric([str(row["period"])], float(row[key]))
            families += [value, lower, upper]
        estimated = GaugeMetricFamily("clinval_estimated_auroc", "Label-free (CBPE) AUROC estimate per production period", labels=["period"])
        for row in values.get("label_free_estimates") or []:
            if row.get("metric") == "AUROC" and row.get("status") == STATUS_OK and _finite(row.get("value")):
                estimated.add_metric([str(row["period"])], float(row["value"]))
        drifted = GaugeMetricFamily("clinval_drifted_features", "Input features that drifted (FDR-controlled) per production period", labels=["period"])
        counts: dict[str, int] = {}
        for row in values.get("feature_drift") or []:
            period = str(row.get("period"))
            counts[period] = counts.get(period, 0) + bool(row.get("drifted"))
        for period, count in counts.items():
            drifted.add_metric([period], count)
        families += [estimated, drifted]
    alerts = [alert for path in sorted(reports.glob("*.json")) for alert in ((_read_json(path) or {}).get("alerts") or [])]
    decided = _decided_alerts(approvals_dir)
    open_alerts = GaugeMetricFamily("clinval_open_alerts", "Alerts in the latest records still waiting for a signed decision", labels=["kind"])
    by_kind: dict[str, int] = {}
    for alert in alerts:
        if isinstance(alert, dict) and alert.get("id") not in decided:
            kind = str(alert.get("kind", "unknown"))
            by_kind[kind] = by_kind.get(kind, 0) + 1
    for kind in sorted(set(by_kind) | {"drift", "fairness"}):
        open_alerts.add_metric([kind], by_kind.get(kind, 0))
    families.append(open_alerts)
    return families


def _decided_alerts(approvals_dir: str | os.PathLike[str] | None) -> set[str]:
    if approvals_dir is None or not Path(approvals_dir).exists():
        return set()
    return {str(raw.get("alert_id")) for path in Path(approvals_dir).glob("*.json") if (raw := _read_json(path))}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


class RecordsCollector(Collector):
    """Re-reads the records at most once per change of the files (size and mtime)."""

    def __init__(self, *, reports_dir: str | os.PathLike[str], approvals_dir: str | os.PathLike[str] | None = None) -> None:
        self._reports, self._approvals = Path(reports_dir), approvals_dir
        self._key: tuple[Any, ...] | None = None
        self._families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        key = tuple(_stamp(p) for p in self._watched())
        if key != self._key:
            self._families = records_metrics(reports_dir=self._reports, approvals_dir=self._approvals)
            self._key = key
        yield from self._families

    def _watched(self) -> list[Path]:
        paths = sorted(self._reports.glob("*.json")) if self._reports.exists() else []
        if self._approvals is not None and Path(self._approvals).exists():
            paths += sorted(Path(self._approvals).glob("*.json"))
        return paths


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (str(path), -1, -1)
    return (str(path), stat.st_mtime_ns, stat.st_size)


# ---------------------------------------------------------------------------- service
class _LogCollector(Collector):
    def __init__(self, stats: LogStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        yield CounterMetricFamily("clinval_log_records", "Predictions made durable in the prediction log", value=stats.records_logged)
        yield CounterMetricFamily("clinval_log_commits", "Group commits (one flush each)", value=stats.commits)
        yield CounterMetricFamily("clinval_log_failed_batches", "Batches the log could not make durable (answered 503)", value=stats.failed_batches)
        yield CounterMetricFamily("clinval_log_segments_sealed", "Closed segments sealed in the ledger", value=stats.segments_sealed)
        yield CounterMetricFamily("clinval_log_seal_failures", "Attempts to seal a segment that failed and will be retried", value=stats.seal_failures)
        yield GaugeMetricFamily("clinval_log_up", "1 if the last write to the prediction log succeeded", value=0 if stats.last_error else 1)
        since = stats.unsealed_since
        yield GaugeMetricFamily("clinval_log_unsealed_seconds", "Age of the oldest prediction not yet sealed in the ledger",
                                value=0.0 if since is None else max(0.0, time.time() - since))


class ServiceMetrics:
    """The scoring service's metrics, in a registry of its own.

    Parameters
    ----------
    model_id, model_sha256 : str
        The model in force (``clinval_model_info``).
    reports_dir, approvals_dir : path or None
        Where the latest evidence records and decisions are; None leaves them out.
    """

    def __init__(self, *, model_id: str, model_sha256: str, reports_dir: str | os.PathLike[str] | None = None,
                 approvals_dir: str | os.PathLike[str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("clinval_requests", "Prediction requests answered, by HTTP status", ["status"], registry=self.registry)
        self._latency = Histogram("clinval_request_seconds", "Time to answer a prediction request, logging included",
                                  ["status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._predictions = Counter("clinval_predictions", "Predictions answered (each logged first)", registry=self.registry)
        self._unseen = Counter("clinval_unseen_categories", "Records scored with a category unseen in training, by feature",
                               ["feature"], registry=self.registry)
        self._flush = Histogram("clinval_log_flush_seconds", "Durability lag: from a request's submit to the flush that made it durable",
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        info = GaugeMetricFamily("clinval_model_info", "The model in force", labels=["model_id", "sha256"])
        info.add_metric([model_id, model_sha256], 1)
        self.registry.register(_Static([info]))
        if reports_dir is not None:
            self.registry.register(RecordsCollector(reports_dir=reports_dir, approvals_dir=approvals_dir))
        for status in ("200", "422", "503"):
            self._requests.labels(status)

    def watch_log(self, stats: LogStats) -> None:
        """Export the prediction log's counters (read at each scrape)."""
        self.registry.register(_LogCollector(stats))

    def answered(self, *, status: int, seconds: float, records: int, unseen: Mapping[str, int] | None = None) -> None:
        """Count one answered request."""
        label = str(status)
        self._requests.labels(label).inc()
        self._latency.labels(label).observe(seconds)
        if records:
            self._predictions.inc(records)
        for feature, count in (unseen or {}).items():
            self._unseen.labels(feature).inc(count)

    def flushed(self, records: int, seconds: float) -> None:
        """Record one group commit (the prediction log's ``on_commit``)."""
        self._flush.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, with its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Static(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


# ---------------------------------------------------------------------------- textfile
def export_textfile(
    path: str | os.PathLike[str],
    *,
    reports_dir: str | os.PathLike[str],
    approvals_dir: str | os.PathLike[str] | None = None,
    log_families: Iterable[Metric] = (),
) -> Path:
    """Write the records' metrics (and any log families) for a textfile collector.

    ``write_to_textfile`` writes a temporary file and renames it, so the collector never
    reads half a file.
    """
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RecordsCollector(reports_dir=reports_dir, approvals_dir=approvals_dir))
    registry.register(_Static(log_families))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return Path(path)


def log_families(*, directory: str | os.PathLike[str], ledger) -> list[Metric]:
    """The prediction log's state on disk: sealed predictions and segments, open segments
    and the age of the oldest prediction not yet sealed (for ``clinval metrics export``)."""
    from clinval.predlog import WAL_DIR, WAL_SUFFIX, read_wal, sealed_entries

    sealed = sealed_entries(ledger)
    open_records, oldest = 0, None
    wal = Path(directory) / WAL_DIR
    paths = sorted(wal.glob(f"*{WAL_SUFFIX}")) if wal.exists() else []
    for path in paths:
        for request in read_wal(path).requests:
            open_records += len(request["risk"])
            oldest = request["t"] if oldest is None else min(oldest, request["t"])
    return [
        GaugeMetricFamily("clinval_ledger_sealed_predictions", "Predictions in segments sealed in the ledger",
                          value=sum(e.body["count"] for e in sealed.values())),
        GaugeMetricFamily("clinval_ledger_sealed_segments", "Closed segments sealed in the ledger", value=len(sealed)),
        GaugeMetricFamily("clinval_log_open_segments", "Segments not yet sealed (open, or left by a crash)", value=len(paths)),
        GaugeMetricFamily("clinval_log_open_records", "Predictions in segments not yet sealed", value=open_records),
        GaugeMetricFamily("clinval_log_unsealed_seconds", "Age of the oldest prediction not yet sealed in the ledger",
                          value=0.0 if oldest is None else max(0.0, time.time() - oldest / 1e6)),
    ]
