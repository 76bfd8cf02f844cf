"""``clinval report``: pages built from the evidence records and the audit ledger.

``index`` is a DVC stage (a pure function of ``reports/`` and ``audit/approvals``);
``pccp`` reads the growing ledger and shows its times, so it is run by hand before a
review or a submission. ``pccp`` exits with status 1 (as ``clinval audit verify`` does)
when the ledger fails verification, after writing the report that says so.
"""

from __future__ import annotations

from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import (
    DEFAULT_APPROVALS,
    DEFAULT_PLAN,
    OUTPUT_DIR,
    OUTPUT_FILE,
    PARAMS_FILE,
    friendly,
    ledger_options,
    load_params,
    open_ledger,
)

EXIT_LEDGER_FAILED = 1
"""Exit status of ``report pccp`` when the ledger fails verification (as ``audit verify``)."""

MSG_WROTE = "wrote {path}"
MSG_LEDGER_FAILED = "the audit ledger failed verification ({result}); the report says so at its top"


@click.group()
def report() -> None:
    """Reports built from the evidence records and the audit ledger."""


@report.command("index")
@click.option("--reports", type=OUTPUT_DIR, default=layout.REPORTS, show_default=True, help="Folder holding the records.")
@click.option("--approvals", type=OUTPUT_DIR, default=DEFAULT_APPROVALS, show_default=True,
              help="Signed decisions on alerts (counts open and decided alerts); a missing folder holds none.")
@click.option("--out", type=OUTPUT_FILE, default="reports/index.html", show_default=True, help="The index page to write.")
@friendly
def index(reports: Path, approvals: Path, out: Path) -> None:
    """Write the index page: every evidence record with its digest and status, the alerts
    (open or decided) and the monitored metrics per period."""
    from clinval.report import write_index

    path = write_index(reports_dir=reports, out=out, approvals_dir=approvals)
    click.echo(MSG_WROTE.format(path=path))


@report.command("pccp")
@click.option("--reports", type=OUTPUT_DIR, default=layout.REPORTS, show_default=True, help="Folder holding the records.")
@click.option("--plan", "plan_path", type=PARAMS_FILE, default=DEFAULT_PLAN, show_default=True, help="The change control plan.")
@click.option("--approvals", type=OUTPUT_DIR, default=DEFAULT_APPROVALS, show_default=True, help="Signed decisions on alerts.")
@click.option("--out", type=OUTPUT_FILE, default="reports/pccp_report.html", show_default=True, help="The report to write.")
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A trust root kept off-system (`clinval audit witness`); the ledger must match it.")
@ledger_options
@friendly
def pccp(reports: Path, plan_path: Path, approvals: Path, out: Path, trust: Path | None, ledger_path: Path,
         checkpoint_dir: Path, keys_dir: Path) -> None:
    """Write the PCCP report: description of modifications, modification protocol, impact
    assessment, traceability and sign-off, from the records and the verified ledger."""
    from clinval.pccp import plan_from_params
    from clinval.report import write_pccp_report

    plan = plan_from_params(load_params(plan_path))
    written = write_pccp_report(
        plan=plan, plan_file=plan_path, ledger=open_ledger(ledger_path, checkpoint_dir, keys_dir),
        reports_dir=reports, out=out, approvals_dir=approvals, trust=trust,
    )
    click.echo(MSG_WROTE.format(path=written.path))
    if not written.verification.ok:
        click.echo(f"Error: {MSG_LEDGER_FAILED.format(result=written.verification)}", err=True)
        raise click.exceptions.Exit(EXIT_LEDGER_FAILED)
