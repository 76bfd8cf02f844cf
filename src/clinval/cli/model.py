"""``clinval model``: build the candidates the change control plan allows, and promote one."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import (
    DEFAULT_APPROVALS,
    DEFAULT_PLAN,
    EXISTING_DIR,
    OUTPUT_DIR,
    PARAMS_FILE,
    UserError,
    friendly,
    ledger_options,
    load_params,
    open_ledger,
    unlock_signer,
)

PROMOTED_DIR = Path("models/promoted")
MSG_MODEL_CHANGED = ("{path} hashes to {found}, not the {expected} the ledger recorded for {cid} (retrain seq {seq}); "
                     "re-run `dvc repro` and `clinval audit record`.")
MSG_LEDGER_FAILED = "the audit ledger fails verification ({result}); nothing is promoted from an unverified ledger."


@click.group()
def model() -> None:
    """Candidates under the change control plan: build them, promote one."""


@model.command("build-candidates")
@click.option("--approvals", type=OUTPUT_DIR, default=DEFAULT_APPROVALS, show_default=True,
              help="The approval cache (signed ledger lines, rebuilt from the ledger).")
@click.option("--records", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              default=("reports/02_drift_analysis.json", "reports/03_fairness_audit.json"),
              show_default=True, help="Evidence records whose alerts are current (those present are read).")
@click.option("--plan", "plan_path", type=PARAMS_FILE, default=DEFAULT_PLAN, show_default=True, help="The change control plan.")
@click.option("--prepared", type=EXISTING_DIR, default="data/prepared", show_default=True, help="The prepared study.")
@click.option("--scored", type=EXISTING_DIR, default="data/scored", show_default=True, help="The prediction log.")
@click.option("--locked", type=EXISTING_DIR, default=layout.LOCKED_MODEL, show_default=True, help="The locked model.")
@click.option("--out", type=OUTPUT_DIR, default=layout.CANDIDATES, show_default=True, help="Folder for candidates (DVC output).")
@friendly
def build_candidates_command(approvals, records, plan_path, prepared, scored, locked, out) -> None:
    """Build the candidate each approved alert calls for, from permitted data only.

    Approvals are checked offline (the signed ledger lines in each cache file: signatures,
    roles, binding to the alert); modifications the plan does not allow are refused and
    listed in the manifest with the reason. Each candidate names the e-signatures and the
    plan digest it was built from.
    """
    from clinval import data, model as model_lib, pccp, review, revalidation
    from clinval._io import sha256_file

    plan = pccp.plan_from_params(load_params(plan_path))
    pipeline, card = model_lib.load_model(locked)
    present = [r for r in records if r.exists()]
    built, refusals = revalidation.build_candidates(
        approvals=review.read_approvals(approvals), current_alerts=review.alerts_from_records(present), plan=plan,
        log=model_lib.load_prediction_log(scored), locked=pipeline, card=card,
        schema=data.load_prepared(prepared).schema, plan_sha256=sha256_file(plan_path),
    )
    revalidation.write_candidates(built, refusals, out)
    click.echo(f"candidates {out}: {len(built)} built, {len(refusals)} refused.")
    for refusal in refusals:
        click.echo(f"  {refusal['alert_id']}: {refusal['reason']}")


@model.command("promote")
@click.argument("candidate_id")
@click.option("--reason", required=True, help="Why, in your words (recorded with the signature).")
@click.option("--plan", "plan_path", type=PARAMS_FILE, default=DEFAULT_PLAN, show_default=True,
              help="The change control plan (must be the one the candidate was evaluated under).")
@click.option("--trust", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A trust root kept off-system (`clinval audit witness`); the ledger must match it.")
@ledger_options
@friendly
def promote(candidate_id, reason, plan_path, trust, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Promote CANDIDATE_ID: a second e-signature (meaning approved) and a model_version entry.

    Everything is decided from the verified ledger, never from reports/: the candidate's
    retrain entry must record that every acceptance criterion passed under this plan
    (the plan file must hash to the digest recorded there), name approvals that are the
    decisions in the ledger on alerts whose triggers allow this modification (unless the
    plan makes it automatic), and the model file must still hash to the recorded digest.
    You may be neither a person who approved that retraining nor a machine identity.
    """
    from clinval import pccp, review
    from clinval._io import sha256_file
    from clinval.gate import GateLedger, approver_names
    from clinval.signing import esign
    from clinval.signoff import signer_text

    plan = pccp.plan_from_params(load_params(plan_path))
    plan_sha256 = sha256_file(plan_path)
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    entries, verification = review.trusted_entries(ledger, trust=trust)
    if not verification.ok:
        raise UserError(f"{verification.code}: {MSG_LEDGER_FAILED.format(result=verification)}")
    gate = GateLedger(entries)
    # Refuse what does not depend on who signs before asking for a passphrase.
    for promoter in (None, "signer"):
        signer = unlock_signer(ledger) if promoter else None
        problem = gate.promotion_problem(candidate_id=candidate_id, promoter=signer and signer.user_id,
                                         plan=plan, plan_sha256=plan_sha256)
        if problem is not None:
            raise UserError(str(problem))
    retrain = gate.retrain(candidate_id)
    approvers, _ = gate.approvers(retrain, plan=plan)
    source = Path(retrain.body["model_file"]["path"])
    found = sha256_file(source) if source.exists() else "nothing (missing)"
    if found != retrain.body["model_file"]["sha256"]:
        raise UserError(f"{review.GateCode.MODEL_CHANGED}: " + MSG_MODEL_CHANGED.format(
            path=source, found=found, expected=retrain.body["model_file"]["sha256"], cid=candidate_id, seq=retrain.seq))
    # The ledger refuses a machine identity's key here (UNAUTHORIZED), whoever asks.
    signature = esign(ledger, signer=signer, target_ref=str(retrain.seq), target_digest=retrain.digest,
                      meaning="approved", reason=reason)
    # the candidates folder is rebuilt by every run: keep the promoted model where nothing replaces it
    kept = PROMOTED_DIR / candidate_id
    kept.mkdir(parents=True, exist_ok=True)
    for item in source.parent.iterdir():
        shutil.copy2(item, kept / item.name)
    version = ledger.append(kind="model_version", signer=signer, body={
        "candidate_id": candidate_id,
        "modification": retrain.body.get("modification"),
        "model_file": {"path": (kept / source.name).as_posix(), "sha256": sha256_file(kept / source.name)},
        "retrain_seq": retrain.seq,
        "training_data_digest": retrain.body.get("training_data_digest"),
        "plan_sha256": plan_sha256,
        "validation_report": retrain.body.get("report"),
        "retraining_approved_by": approver_names(approvers),
        "approvals": [{"alert_id": a.alert_id, "seq": a.esig.seq, "sha256": a.esig.digest} for a in approvers],
        "promoted_by": signer.user_id,
        "promotion_esig_seq": signature.seq,
        "criteria": [c["criterion"] for c in retrain.body.get("criteria") or []],
    })
    click.echo(f"promoted {candidate_id}: e-signature seq {signature.seq} by "
               f"{signer_text(signer.printed_name, signer.user_id, signer.key_id)}, model_version seq {version.seq}; "
               f"model kept in {kept}/ (track it: `dvc add {PROMOTED_DIR}` and commit the .dvc file).")
