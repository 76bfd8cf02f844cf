"""``clinval review``: the review queue and signed decisions on alerts."""

from __future__ import annotations

from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import (
    DEFAULT_APPROVALS,
    UserError,
    echo_json,
    format_option,
    friendly,
    ledger_options,
    open_ledger,
    unlock_signer,
)

DEFAULT_RECORDS = ("reports/02_drift_analysis.json", "reports/03_fairness_audit.json")

_RECORDS = click.Path(dir_okay=False, path_type=Path)  # the defaults need not all exist: the ones present are read
_APPROVALS = click.Path(file_okay=False, path_type=Path)


def _alerts(records: tuple[Path, ...]) -> list[dict]:
    from clinval.review import alerts_from_records

    present = [r for r in records if r.exists()]
    if not present:
        raise UserError(f"no evidence records found ({', '.join(map(str, records))}); run `dvc repro` first.")
    return alerts_from_records(present)


def _find(alerts: list[dict], alert_id: str) -> dict:
    matches = [a for a in alerts if a["id"] == alert_id] or [a for a in alerts if a["id"].startswith(alert_id)]
    if len(matches) != 1:
        known = ", ".join(a["id"] for a in alerts) or "none"
        what = "no alert" if not matches else f"{len(matches)} alerts"
        raise UserError(f"{what} matching {alert_id!r}; open alerts: {known}.")
    return matches[0]


@click.group()
def review() -> None:
    """The human review gate: list alerts, approve or reject them with an e-signature."""


@review.command("pull")
@click.option("--records", type=_RECORDS, multiple=True, default=DEFAULT_RECORDS, show_default=True,
              help="Evidence records (JSON) whose alerts to pull.")
@click.option("--scored", type=click.Path(file_okay=False, exists=True, path_type=Path), default="data/scored",
              show_default=True, help="The prediction log.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=layout.REVIEW_QUEUE, show_default=True,
              help="The review queue folder (DVC output).")
@friendly
def pull(records: tuple[Path, ...], scored: Path, out: Path) -> None:
    """Write each alert's production records to OUT/<alert-id>.parquet (pipeline stage `queue`).

    Patient rows go to the DVC-tracked review queue only, never to reports/.
    """
    from clinval.data import load_prediction_log  # not clinval.model: no scikit-learn to import
    from clinval.review import pull_review_queue

    alerts = _alerts(records)
    pull_review_queue(alerts=alerts, log=load_prediction_log(scored), out_dir=out)
    click.echo(f"review queue {out}: {len(alerts)} alert{'' if len(alerts) == 1 else 's'}.")


def _ledger_decisions(ledger):
    """Decisions from the verified ledger (never from the cache), and the verification."""
    from clinval.review import decisions_in, trusted_entries

    entries, verification = trusted_entries(ledger)
    if not verification.ok:
        click.echo(f"warning: the ledger fails verification ({verification}); decisions after seq "
                   f"{verification.seq} are not shown", err=True)
    return entries, decisions_in(entries)


def _decision_json(decision) -> dict:
    esig = decision.esig
    return {"decision": decision.decision, "signer": decision.signer, "printed_name": decision.printed_name,
            "key_id": decision.key_id, "seq": esig.seq, "time": esig.time, "reason": esig.body.get("reason")}


@review.command("list")
@click.option("--records", type=_RECORDS, multiple=True, default=DEFAULT_RECORDS, show_default=True,
              help="Evidence records (JSON).")
@click.option("--all", "show_all", is_flag=True, help="Include alerts already decided.")
@format_option("text", "json")
@ledger_options
@friendly
def list_alerts(records: tuple[Path, ...], show_all: bool, output_format: str, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Show open alerts with their evidence record and review-queue file.

    Decisions are read from the verified ledger, not from audit/approvals/. --format json
    prints a list of the alerts shown, each with its decision (null while open).
    """
    from clinval.signoff import printable, signer_text

    _, decided = _ledger_decisions(open_ledger(ledger_path, checkpoint_dir, keys_dir))
    shown = [(alert, decided.get(alert["id"])) for alert in _alerts(records) if show_all or alert["id"] not in decided]
    if output_format == "json":
        echo_json([{**alert, "decision": decision and _decision_json(decision)} for alert, decision in shown])
        return
    for alert, decision in shown:
        state = (f"{decision.decision} by {signer_text(decision.printed_name, decision.signer, decision.key_id)}"
                 if decision else "open")
        click.echo(f"{alert['id']}  [{state}]\n  {printable(alert['summary'])}\n  evidence: reports/{alert['record']}   "
                   f"records: {alert['queue_file']} ({alert['n_records']})\n  allowed change: {alert.get('modification') or 'none (review only)'}")
    if not shown:
        click.echo("no open alerts." if not show_all else "no alerts.")


@review.command("sync")
@click.option("--approvals", type=_APPROVALS, default=DEFAULT_APPROVALS, show_default=True, help="The approval cache to rebuild.")
@ledger_options
@friendly
def sync(approvals: Path, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Rebuild the approval cache (audit/approvals/) from the verified ledger.

    One file per decided alert, holding its signed ledger lines; files the ledger does not
    back are replaced or removed. `review approve|reject` and `audit record` do this too.
    """
    from clinval.review import sync_approvals

    entries, _ = _ledger_decisions(open_ledger(ledger_path, checkpoint_dir, keys_dir))
    result = sync_approvals(entries, approvals_dir=approvals)
    click.echo(f"approval cache {approvals}: {len(result.written)} written, {len(result.removed)} removed "
               f"(not backed by the ledger: {', '.join(result.removed) or 'none'}).")


@review.command("check")
@click.option("--approvals", type=_APPROVALS, default=DEFAULT_APPROVALS, show_default=True, help="The approval cache to check.")
@ledger_options
@friendly
def check(approvals: Path, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Check each file of the approval cache as the revalidate stage does, and against the ledger.

    Prints `ALERT: ok`, or `ALERT: CODE: why` for a file that fails the offline check
    (signatures, roles, binding; what `build-candidates` refuses) or is not the decision
    the verified ledger holds (NOT_IN_LEDGER). Exits 1 when any file fails.
    """
    from clinval.review import GateCode, check_approval, read_approvals

    _, decided = _ledger_decisions(open_ledger(ledger_path, checkpoint_dir, keys_dir))
    failed = 0
    for approval in read_approvals(approvals):
        problem = check_approval(approval)
        backed = decided.get(approval.alert_id)
        if problem is None and (backed is None or backed.lines != approval.lines):
            problem = f"{GateCode.NOT_IN_LEDGER}: not the decision the verified ledger holds (`clinval review sync`)"
        failed += problem is not None
        click.echo(f"{approval.alert_id}: {problem or 'ok'}")
    if failed:
        raise click.exceptions.Exit(1)


def _decide(verb: str, alert_id: str, reason: str, records, approvals, ledger_path, checkpoint_dir, keys_dir) -> None:
    from clinval.review import DECISION_VERBS, decide
    from clinval.signoff import signer_text

    alert = _find(_alerts(records), alert_id)
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    signer = unlock_signer(ledger)
    approval = decide(ledger=ledger, signer=signer, alert=alert, decision=DECISION_VERBS[verb], reason=reason, approvals_dir=approvals)
    click.echo(f"{approval.decision}: {alert['id']} signed by {signer_text(signer.printed_name, signer.user_id, signer.key_id)} "
               f"at seq {approval.esig.seq}; approval cache {approvals}/ rebuilt from the ledger. Run `dvc repro` to revalidate.")


def _decision_command(verb: str, meaning: str):
    @click.argument("alert_id")
    @click.option("--reason", required=True, help="Why, in your words (recorded with the signature).")
    @click.option("--records", type=_RECORDS, multiple=True, default=DEFAULT_RECORDS, show_default=True,
                  help="Evidence records (JSON).")
    @click.option("--approvals", type=_APPROVALS, default=DEFAULT_APPROVALS, show_default=True,
                  help="The approval cache to rebuild.")
    @ledger_options
    @friendly
    def command(alert_id, reason, records, approvals, ledger_path, checkpoint_dir, keys_dir):
        _decide(verb, alert_id, reason, records, approvals, ledger_path, checkpoint_dir, keys_dir)

    command.__doc__ = (
        f"Sign '{meaning}' on ALERT_ID (an id or unique prefix) with your user id and passphrase.\n\n"
        "The ledger is verified, then the e-signature is appended, bound to the alert's ledger entry, and "
        "the approval cache audit/approvals/ is rebuilt from the ledger for the revalidate stage. A decision "
        "is final: the ledger refuses a second one on the same alert, by anyone."
    )
    return review.command(verb)(command)


approve = _decision_command("approve", "approved")
reject = _decision_command("reject", "rejected")
