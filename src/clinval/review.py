"""The human review gate: the review queue, and signed approvals of alerts.

A fired trigger (drift or fairness) is an *alert* in its evidence record's JSON. The
``queue`` stage pulls each alert's production records into
``data/review_queue/<alert-id>.parquet`` (DVC-tracked; never into ``reports/``), so a
reviewer can look at the patients behind an aggregate on an approved workstation.

A reviewer decides with ``clinval review approve|reject ALERT --reason TEXT``: an
e-signature in the audit ledger bound to the alert's ledger entry, plus an approval file
``audit/approvals/<alert-id>.json`` holding the alert, a copy of both signed ledger lines
and the signer's public key. The approval files are a dependency of the ``revalidate``
stage, which checks each one offline (:func:`check_approval`: the signature verifies with
the key in the file and is bound to the alert's entry) without reading the growing
ledger, so it stays a pure function of its inputs. That check proves consistency, not
membership: a file signed by a key the ledger never registered passes it. The ledger is
the authority: ``clinval model promote``, ``clinval report pccp`` and ``clinval audit
verify`` accept a decision only if its signed line is in the verified ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clinval._io import atomic_directory, atomic_write_text

__all__ = [
    "DECISIONS",
    "Approval",
    "alerts_from_records",
    "check_approval",
    "decide",
    "ledger_problem",
    "pull_review_queue",
    "read_approvals",
    "write_approval",
]

MANIFEST = "manifest.json"
DECISIONS = {"approve": "approved", "reject": "rejected"}
"""CLI verb -> e-signature meaning."""

_ALERT_FIELDS = ("id", "kind", "trigger", "period", "summary", "modification", "n_records", "queue_file", "evidence")


def alerts_from_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every alert in the given JSON evidence records, with the record it came from."""
    alerts = []
    for path in paths:
        path = Path(path)
        record = json.loads(path.read_text())
        for alert in record.get("alerts") or []:
            alerts.append({**alert, "record": path.with_suffix(".html").name})
    return alerts


def queue_columns(log: pd.DataFrame) -> list[str]:
    """The columns a reviewer gets for each pulled record."""
    return ["period", *[c for c in log.columns if c != "period"]]


def pull_review_queue(*, alerts: Sequence[Mapping[str, Any]], log: pd.DataFrame, out_dir: str | os.PathLike) -> Path:
    """Write each alert's production records to ``out_dir/<alert-id>.parquet`` and a
    ``manifest.json`` listing the alerts (all files or none)."""
    manifest = []
    with atomic_directory(out_dir) as tmp:
        for alert in alerts:
            rows = log[log["period"] == alert["period"]][queue_columns(log)]
            if len(rows) != alert["n_records"]:
                raise ValueError(
                    f"alert {alert['id']}: the record says {alert['n_records']} records in period {alert['period']}, "
                    f"the prediction log has {len(rows)}; re-run the pipeline."
                )
            rows.to_parquet(tmp / f"{alert['id']}.parquet", index=False)
            manifest.append({"id": alert["id"], "kind": alert["kind"], "period": alert["period"],
                             "n_records": int(len(rows)), "file": f"{alert['id']}.parquet", "record": alert.get("record")})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


@dataclass(frozen=True)
class Approval:
    """A reviewer's signed decision on one alert, as stored in ``audit/approvals/``.

    ``alert_entry`` is the ledger line that recorded the alert; ``esig_entry`` the
    ledger line of the e-signature on it; ``public_key`` the signer's Ed25519 key
    (base64). The revalidate stage checks them offline with :func:`check_approval`;
    ``clinval model promote`` also checks that both lines are in the ledger.
    """

    alert_id: str
    alert: Mapping[str, Any]
    decision: str
    alert_entry: str
    esig_entry: str
    public_key: str

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    @property
    def signer(self) -> str:
        return json.loads(self.esig_entry)["actor"]

    @property
    def printed_name(self) -> str:
        return json.loads(self.esig_entry)["body"]["printed_name"]


def _approval_path(approvals_dir: str | os.PathLike, alert_id: str) -> Path:
    return Path(approvals_dir) / f"{alert_id}.json"


def write_approval(approvals_dir: str | os.PathLike, approval: Approval) -> Path:
    """Write an approval file, refusing to overwrite an earlier decision on the alert."""
    path = _approval_path(approvals_dir, approval.alert_id)
    if path.exists():
        existing = json.loads(path.read_text())
        raise FileExistsError(f"{path}: alert {approval.alert_id} was already {existing['decision']}; a decision is never overwritten.")
    content = {"alert_id": approval.alert_id, "alert": {k: approval.alert.get(k) for k in _ALERT_FIELDS},
               "decision": approval.decision, "alert_entry": approval.alert_entry, "esig_entry": approval.esig_entry,
               "public_key": approval.public_key}
    return atomic_write_text(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


def read_approvals(approvals_dir: str | os.PathLike) -> list[Approval]:
    """Every approval file in ``approvals_dir``, by alert id."""
    out = []
    for path in sorted(Path(approvals_dir).glob("*.json")):
        raw = json.loads(path.read_text())
        out.append(Approval(alert_id=raw["alert_id"], alert=raw["alert"], decision=raw["decision"],
                            alert_entry=raw["alert_entry"], esig_entry=raw["esig_entry"], public_key=raw["public_key"]))
    return out


def check_approval(approval: Approval) -> str | None:
    """Check an approval offline; return the problem, or None if it holds.

    The e-signature line must be correctly signed by the key it names (whose public key
    the file carries), say ``approved`` or ``rejected`` as the file does, and be bound to
    the digest of the alert's ledger line; that line must record this alert.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from clinval.ledger._encoding import b64decode_exact, key_fingerprint, sha256_hex
    from clinval.ledger._entry import signed_message

    try:
        esig = json.loads(approval.esig_entry)
        alert_entry = json.loads(approval.alert_entry)
        public = b64decode_exact(approval.public_key, 32)
    except (ValueError, TypeError) as exc:
        return f"approval {approval.alert_id}: unreadable ({exc})"
    if public is None or key_fingerprint(public) != esig.get("key"):
        return f"approval {approval.alert_id}: the public key does not match the signing key {esig.get('key')}"
    if esig.get("kind") != "esig" or esig["body"].get("meaning") != approval.decision:
        return f"approval {approval.alert_id}: the signature's meaning is not {approval.decision!r}"
    target = esig["body"].get("target", {})
    if target.get("seq") != alert_entry.get("seq") or target.get("sha256") != sha256_hex(approval.alert_entry.encode()):
        return f"approval {approval.alert_id}: the signature is not bound to the alert's ledger entry"
    if alert_entry.get("kind") not in ("drift_alert", "fairness_alert") or alert_entry["body"].get("alert_id") != approval.alert_id:
        return f"approval {approval.alert_id}: the signed ledger entry records a different alert"
    message, signature = signed_message(approval.esig_entry.encode())
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return f"approval {approval.alert_id}: the e-signature does not verify"
    return None


def ledger_problem(approval: Approval, *, ledger_esigs: Collection[str]) -> str | None:
    """Like :func:`check_approval`, and the e-signature must also be a line of the ledger.

    ``ledger_esigs`` holds the ledger's esig lines (decoded); only the ledger, not the
    file, proves the decision was made.
    """
    problem = check_approval(approval)
    if problem is None and approval.esig_entry not in ledger_esigs:
        return "its e-signature is not in the ledger"
    return problem


def decide(*, ledger, signer, alert: Mapping[str, Any], decision: str, reason: str, approvals_dir: str | os.PathLike) -> Approval:
    """Sign a decision (``approved`` or ``rejected``) on a recorded alert and write its approval file.

    Raises
    ------
    KeyError
        If the alert is not in the ledger yet (run ``clinval audit record`` first).
    FileExistsError
        If the alert was already decided.
    """
    from clinval.ledger._encoding import b64encode
    from clinval.signing import PIPELINE_ACTOR, esign

    if signer.user_id == PIPELINE_ACTOR:
        raise ValueError(f"{PIPELINE_ACTOR!r} is the pipeline's machine identity; a review decision is signed by a person.")
    if _approval_path(approvals_dir, alert["id"]).exists():
        existing = json.loads(_approval_path(approvals_dir, alert["id"]).read_text())
        raise FileExistsError(f"alert {alert['id']} was already {existing['decision']}; a decision is never overwritten.")
    kind = f"{alert['kind']}_alert"
    recorded = ledger.find(kind=kind, alert_id=alert["id"])
    if not recorded:
        raise KeyError(f"alert {alert['id']} is not in the audit ledger yet; run `clinval audit record` after `dvc repro`, then sign.")
    entry = recorded[-1]
    esig = esign(ledger, signer=signer, target_ref=str(entry.seq), target_digest=entry.digest, meaning=decision, reason=reason)
    approval = Approval(alert_id=alert["id"], alert=alert, decision=decision, alert_entry=entry.line.decode(),
                        esig_entry=esig.line.decode(), public_key=b64encode(signer.public_key))
    write_approval(approvals_dir, approval)
    return approval
