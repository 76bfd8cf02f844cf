"""``clinval review``: the review queue and signed decisions on alerts."""

from __future__ import annotations

from pathlib import Path

import click

from clinval.cli._common import friendly, ledger_options, open_ledger, unlock_signer

DEFAULT_RECORDS = ("reports/02_drift_analysis.json", "reports/03_fairness_audit.json")
DEFAULT_APPROVALS = "audit/approvals"


def _alerts(records: tuple[str, ...]) -> list[dict]:
    from clinval.review import alerts_from_records

    present = [r for r in records if Path(r).exists()]
    if not present:
        raise FileNotFoundError(f"no evidence records found ({', '.join(records)}); run `dvc repro` first.")
    return alerts_from_records(present)


def _find(alerts: list[dict], alert_id: str) -> dict:
    matches = [a for a in alerts if a["id"] == alert_id] or [a for a in alerts if a["id"].startswith(alert_id)]
    if len(matches) != 1:
        known = ", ".join(a["id"] for a in alerts) or "none"
        what = "no alert" if not matches else f"{len(matches)} alerts"
        raise KeyError(f"{what} matching {alert_id!r}; open alerts: {known}.")
    return matches[0]


@click.group()
def review() -> None:
    """The human review gate: list alerts, approve or reject them with an e-signature."""


@review.command("pull")
@click.option("--records", multiple=True, default=DEFAULT_RECORDS, show_default=True, help="Evidence records (JSON) whose alerts to pull.")
@click.option("--scored", default="data/scored", show_default=True, help="The prediction log.")
@click.option("--out", default="data/review_queue", show_default=True, help="The review queue folder (DVC output).")
@friendly
def pull(records: tuple[str, ...], scored: str, out: str) -> None:
    """Write each alert's production records to OUT/<alert-id>.parquet (pipeline stage `queue`).

    Patient rows go to the DVC-tracked review queue only, never to reports/.
    """
    from clinval.model import load_prediction_log
    from clinval.review import pull_review_queue

    alerts = _alerts(records)
    pull_review_queue(alerts=alerts, log=load_prediction_log(scored), out_dir=out)
    click.echo(f"review queue {out}: {len(alerts)} alert(s).")


@review.command("list")
@click.option("--records", multiple=True, default=DEFAULT_RECORDS, show_default=True, help="Evidence records (JSON).")
@click.option("--approvals", default=DEFAULT_APPROVALS, show_default=True, help="Folder of signed decisions.")
@click.option("--all", "show_all", is_flag=True, help="Include alerts already decided.")
@friendly
def list_alerts(records: tuple[str, ...], approvals: str, show_all: bool) -> None:
    """Show open alerts with their evidence record and review-queue file."""
    from clinval.review import read_approvals

    decided = {a.alert_id: a for a in read_approvals(approvals)} if Path(approvals).exists() else {}
    shown = 0
    for alert in _alerts(records):
        decision = decided.get(alert["id"])
        if decision and not show_all:
            continue
        shown += 1
        state = f"{decision.decision} by {decision.printed_name}" if decision else "open"
        click.echo(f"{alert['id']}  [{state}]\n  {alert['summary']}\n  evidence: reports/{alert['record']}   "
                   f"records: {alert['queue_file']} ({alert['n_records']})\n  allowed change: {alert.get('modification') or 'none (review only)'}")
    if not shown:
        click.echo("no open alerts." if not show_all else "no alerts.")


def _decide(verb: str, alert_id: str, reason: str, records, approvals, ledger_path, checkpoint_dir, keys_dir) -> None:
    from clinval.review import DECISIONS, decide

    alert = _find(_alerts(records), alert_id)
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    signer = unlock_signer()
    approval = decide(ledger=ledger, signer=signer, alert=alert, decision=DECISIONS[verb], reason=reason, approvals_dir=approvals)
    click.echo(f"{approval.decision}: {alert['id']} signed by {signer.printed_name} ({signer.user_id}); "
               f"wrote {approvals}/{alert['id']}.json. Run `dvc repro` to revalidate.")


def _decision_command(verb: str, meaning: str):
    @click.argument("alert_id")
    @click.option("--reason", required=True, help="Why, in your words (recorded with the signature).")
    @click.option("--records", multiple=True, default=DEFAULT_RECORDS, show_default=True, help="Evidence records (JSON).")
    @click.option("--approvals", default=DEFAULT_APPROVALS, show_default=True, help="Folder of signed decisions.")
    @ledger_options
    @friendly
    def command(alert_id, reason, records, approvals, ledger_path, checkpoint_dir, keys_dir):
        _decide(verb, alert_id, reason, records, approvals, ledger_path, checkpoint_dir, keys_dir)

    command.__doc__ = (
        f"Sign '{meaning}' on ALERT_ID (an id or unique prefix) with your user id and passphrase.\n\n"
        "The e-signature is appended to the audit ledger, bound to the alert's ledger entry, and "
        "an approval file is written to audit/approvals/ for the revalidate stage. A decision is final."
    )
    return review.command(verb)(command)


approve = _decision_command("approve", "approved")
reject = _decision_command("reject", "rejected")
