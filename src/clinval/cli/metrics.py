"""``clinval metrics export``: the monitored metrics for node_exporter's textfile collector."""

from __future__ import annotations

from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import DEFAULT_APPROVALS, OUTPUT_DIR, OUTPUT_FILE, friendly, ledger_options, open_ledger
from clinval.cli.serve import DEFAULT_LOG_DIR

__all__ = ["metrics"]


@click.group()
def metrics() -> None:
    """Prometheus metrics outside the service (the service itself serves GET /metrics)."""


@metrics.command("export")
@click.option("--out", required=True, type=OUTPUT_FILE,
              help="File to write, e.g. /var/lib/prometheus/node-exporter/clinval.prom.")
@click.option("--reports", "reports_dir", default=layout.REPORTS, show_default=True, type=OUTPUT_DIR,
              help="The latest evidence records.")
@click.option("--approvals", "approvals_dir", default=DEFAULT_APPROVALS, show_default=True, type=OUTPUT_DIR,
              help="Signed decisions (an alert with one is no longer open).")
@click.option("--log-dir", default=DEFAULT_LOG_DIR, show_default=True, type=OUTPUT_DIR,
              help="The prediction log folder.")
@ledger_options
@friendly
def export(out: Path, reports_dir: Path, approvals_dir: Path, log_dir: Path, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Write O/E and AUROC with CI bounds, CBPE AUROC and drifted features per period, open
    alerts, and the prediction log's state, in Prometheus text format (written atomically)."""
    from clinval.metrics import export_textfile, log_families

    families = log_families(directory=log_dir, ledger=open_ledger(ledger_path, checkpoint_dir, keys_dir))
    written = export_textfile(out, reports_dir=reports_dir, approvals_dir=approvals_dir, log_families=families)
    click.echo(f"wrote {written}")
