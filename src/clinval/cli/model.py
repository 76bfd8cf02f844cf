"""``clinval model``: build the candidates the change control plan allows, and promote one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from clinval.cli._common import UserError, friendly, ledger_options, load_params, open_ledger, unlock_signer

PROMOTED_DIR = Path("models/promoted")
MSG_NO_CANDIDATE = "no candidate {cid!r} in {report}; candidates there: {known}."
MSG_FAILS = "candidate {cid} does not meet the acceptance criteria and cannot be promoted: {reasons}"
MSG_NOT_RECORDED = "candidate {cid} is not in the audit ledger yet; run `clinval audit record` first."
MSG_NO_APPROVAL = ("candidate {cid} has no signed approval of its retraining in the ledger "
                   "(alerts {alerts}); promotion needs an approved alert first.")
MSG_SAME_PERSON = ("{user} approved the retraining of {cid}; the change control process requires promotion "
                   "to be signed by a different person.")
MSG_MACHINE = "{user!r} is the pipeline's machine identity; a promotion is signed by a person."
MSG_ALREADY = "candidate {cid} was already promoted (ledger seq {seq})."


@click.group()
def model() -> None:
    """Candidates under the change control plan: build them, promote one."""


@model.command("build-candidates")
@click.option("--approvals", default="audit/approvals", show_default=True, help="Signed decisions on alerts.")
@click.option("--records", multiple=True, default=("reports/02_drift_analysis.json", "reports/03_fairness_audit.json"),
              show_default=True, help="Evidence records whose alerts are current.")
@click.option("--plan", "plan_path", default="params/pccp.yaml", show_default=True, help="The change control plan.")
@click.option("--prepared", default="data/prepared", show_default=True, help="The prepared study.")
@click.option("--scored", default="data/scored", show_default=True, help="The prediction log.")
@click.option("--locked", default="models/locked", show_default=True, help="The locked model.")
@click.option("--out", default="models/candidates", show_default=True, help="Folder for candidates (DVC output).")
@friendly
def build_candidates_command(approvals, records, plan_path, prepared, scored, locked, out) -> None:
    """Build the candidate each approved alert calls for, from permitted data only.

    Approvals are checked offline (signature, binding to the alert); modifications the
    plan does not allow are refused and listed in the manifest with the reason.
    """
    from clinval import data, model as model_lib, pccp, review, revalidation

    plan = pccp.plan_from_params(load_params(plan_path))
    pipeline, card = model_lib.load_model(locked)
    present = [r for r in records if Path(r).exists()]
    built, refusals = revalidation.build_candidates(
        approvals=review.read_approvals(approvals) if Path(approvals).exists() else [],
        current_alerts=review.alerts_from_records(present), plan=plan, log=model_lib.load_prediction_log(scored),
        locked=pipeline, card=card, schema=data.load_prepared(prepared).schema,
    )
    revalidation.write_candidates(built, refusals, out)
    click.echo(f"candidates {out}: {len(built)} built, {len(refusals)} refused.")
    for refusal in refusals:
        click.echo(f"  {refusal['alert_id']}: {refusal['reason']}")


@model.command("promote")
@click.argument("candidate_id")
@click.option("--reason", required=True, help="Why, in your words (recorded with the signature).")
@click.option("--report", default="reports/04_revalidation.json", show_default=True, help="The revalidation record.")
@click.option("--approvals", default="audit/approvals", show_default=True, help="Signed decisions on alerts.")
@click.option("--plan", "plan_path", default="params/pccp.yaml", show_default=True, help="The change control plan.")
@ledger_options
@friendly
def promote(candidate_id, reason, report, approvals, plan_path, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Promote CANDIDATE_ID: a second e-signature (meaning approved) and a model_version entry.

    Refused unless the candidate passed every acceptance criterion, its retraining was
    approved by a signed decision in the ledger (unless the plan makes that modification
    automatic), and you are neither the person who approved that retraining nor the
    pipeline's machine identity.
    """
    from clinval import pccp, review
    from clinval._io import sha256_file
    from clinval.signing import PIPELINE_ACTOR, esign

    plan = pccp.plan_from_params(load_params(plan_path))
    record = json.loads(Path(report).read_text())
    candidates = {c["id"]: c for c in record.get("candidates", [])}
    if candidate_id not in candidates:
        raise UserError(MSG_NO_CANDIDATE.format(cid=candidate_id, report=report, known=", ".join(candidates) or "none"))
    candidate = candidates[candidate_id]
    if candidate["decision"] != "promote":
        failed = [r for r in candidate["reasons"] if "FAILED" in r]
        raise UserError(MSG_FAILS.format(cid=candidate_id, reasons=" ".join(failed)))
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    entries = list(ledger.entries())
    done = [e for e in entries if e.kind == "model_version" and e.body.get("candidate_id") == candidate_id]
    if done:
        raise UserError(MSG_ALREADY.format(cid=candidate_id, seq=done[-1].seq))
    retrain = [e for e in entries if e.kind == "retrain" and e.body.get("candidate_id") == candidate_id]
    if not retrain:
        raise UserError(MSG_NOT_RECORDED.format(cid=candidate_id))
    stored = {e.line.decode() for e in entries if e.kind == "esig"}
    approvers = {a.signer for a in (review.read_approvals(approvals) if Path(approvals).exists() else [])
                 if a.alert_id in candidate["alert_ids"] and a.approved
                 and review.ledger_problem(a, ledger_esigs=stored) is None}
    modification = plan.modifications.get(candidate["modification"])
    automatic = modification is not None and modification.approval == "automatic"
    if not approvers and not automatic:
        raise UserError(MSG_NO_APPROVAL.format(cid=candidate_id, alerts=", ".join(candidate["alert_ids"])))
    signer = unlock_signer()
    if signer.user_id == PIPELINE_ACTOR:
        raise UserError(MSG_MACHINE.format(user=signer.user_id))
    if signer.user_id in approvers:
        raise UserError(MSG_SAME_PERSON.format(user=signer.user_id, cid=candidate_id))
    entry = retrain[-1]
    source = Path(candidate["model_file"])
    if sha256_file(source) != entry.body["model_file"]["sha256"]:
        raise UserError(f"{source} no longer matches the model the ledger recorded for {candidate_id} (seq {entry.seq}); re-run `dvc repro`.")
    signature = esign(ledger, signer=signer, target_ref=str(entry.seq), target_digest=entry.digest, meaning="approved", reason=reason)
    # the candidates folder is rebuilt by every run: keep the promoted model where nothing replaces it
    kept = PROMOTED_DIR / candidate_id
    kept.mkdir(parents=True, exist_ok=True)
    for item in source.parent.iterdir():
        shutil.copy2(item, kept / item.name)
    html = Path(report).with_suffix(".html")
    version = ledger.append(kind="model_version", signer=signer, body={
        "candidate_id": candidate_id,
        "modification": candidate["modification"],
        "model_file": {"path": (kept / source.name).as_posix(), "sha256": sha256_file(kept / source.name)},
        "retrain_seq": entry.seq,
        "training_data_digest": candidate["training_data_digest"],
        "validation_report": {"path": html.as_posix(), "sha256": sha256_file(html)},
        "retraining_approved_by": sorted(approvers),
        "promoted_by": signer.user_id,
        "promotion_esig_seq": signature.seq,
        "criteria": [c["criterion"] for c in candidate["criteria"]],
    })
    click.echo(f"promoted {candidate_id}: e-signature seq {signature.seq} by {signer.printed_name}, model_version seq {version.seq}; "
               f"model kept in {kept}/ (track it: `dvc add {PROMOTED_DIR}` and commit the .dvc file).")
