"""The human review gate: the review queue, signed decisions on alerts, and their cache.

A fired trigger (drift or fairness) is an *alert* in its evidence record's JSON. The
``queue`` stage pulls each alert's production records into
``data/review_queue/<alert-id>.parquet`` (DVC-tracked; never into ``reports/``), so a
reviewer can look at the patients behind an aggregate on an approved workstation.

A reviewer decides with ``clinval review approve|reject ALERT --reason TEXT``
(:func:`decide`): the ledger is verified, then an e-signature is appended, bound to the
alert's ledger entry. The ledger decides what counts: only a person's key may sign it, and
the first decision on an alert is final (a second one is DUPLICATE_DECISION).

``audit/approvals/<alert-id>.json`` is a **cache of the ledger**, rebuilt from the verified
ledger by :func:`sync_approvals` (after every decision and every ``clinval audit record``;
``clinval review sync`` by hand). Each file holds four signed ledger lines: the alert
entry, the e-signature on it, and the ``key_added`` entries of both signers. The cache is a
dependency of the ``revalidate`` stage, which may not read the growing ledger; it checks
each file with :func:`check_approval`, which applies every ledger rule that holds for
lines on their own (:func:`clinval.ledger.check_excerpt`: signatures, roles, binding). It
cannot prove the lines are in the ledger: ``clinval model promote`` and the PCCP report
decide from the verified ledger itself (:mod:`clinval.gate`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinval._io import atomic_directory, atomic_write_text
from clinval.errors import ClinvalError, InputError

if TYPE_CHECKING:  # pandas only types the queue's frames: `clinval review list` should not load it
    import pandas as pd

__all__ = [
    "DECISION_VERBS",
    "Approval",
    "GateCode",
    "GateRefused",
    "Refusal",
    "SyncResult",
    "alerts_from_records",
    "check_approval",
    "decide",
    "decisions_in",
    "pull_review_queue",
    "read_approvals",
    "sync_approvals",
    "trusted_entries",
]

MANIFEST = "manifest.json"
DECISION_VERBS = {"approve": "approved", "reject": "rejected"}
"""CLI verb -> e-signature meaning."""


def alerts_from_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every alert in the given JSON evidence records, with the record it came from."""
    alerts = []
    for path in paths:
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not an evidence record ({error}); re-run `dvc repro`.") from None
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
                raise InputError(
                    f"alert {alert['id']}: the record says {alert['n_records']} records in period {alert['period']}, "
                    f"the prediction log has {len(rows)}; re-run the pipeline."
                )
            rows.to_parquet(tmp / f"{alert['id']}.parquet", index=False)
            manifest.append({"id": alert["id"], "kind": alert["kind"], "period": alert["period"],
                             "n_records": int(len(rows)), "file": f"{alert['id']}.parquet", "record": alert.get("record")})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


class GateCode(StrEnum):
    """Stable codes of the gate's refusals (the ledger's own codes are :class:`clinval.ledger.ErrorCode`)."""

    NOT_IN_LEDGER = "NOT_IN_LEDGER"
    NOT_APPROVED = "NOT_APPROVED"
    SAME_PERSON = "SAME_PERSON"
    CRITERIA_FAILED = "CRITERIA_FAILED"
    NOT_RECORDED = "NOT_RECORDED"
    ALREADY_PROMOTED = "ALREADY_PROMOTED"
    PLAN_CHANGED = "PLAN_CHANGED"
    MODEL_CHANGED = "MODEL_CHANGED"
    NOT_AN_ALERT = "NOT_AN_ALERT"


@dataclass(frozen=True)
class Refusal:
    """Why the gate refuses something: a stable code and a sentence for a person."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class GateRefused(ClinvalError):
    """A refused gate operation (a decision, a promotion), carrying its :class:`Refusal`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal
        self.code = refusal.code


@dataclass(frozen=True)
class Approval:
    """A person's signed decision on one alert, as cached in ``audit/approvals/``.

    Attributes
    ----------
    alert_id : str
        The alert the file is named for.
    decision : str
        ``approved`` or ``rejected``, as the file states it.
    lines : tuple of str
        Signed ledger lines: the alert entry, the e-signature on it, and the
        ``key_added`` entries of their signers. Every fact the gate uses comes from these.
    """

    alert_id: str
    decision: str
    lines: tuple[str, ...] = ()

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    def _entries(self) -> list[Any]:
        from clinval.ledger import Entry

        return [Entry.from_line(line.encode("utf-8")) for line in self.lines]

    @property
    def esig(self):
        """The e-signature entry (checked by :func:`check_approval`)."""
        return next(e for e in self._entries() if e.kind == "esig")

    @property
    def signer(self) -> str:
        return self.esig.actor

    @property
    def printed_name(self) -> str:
        return self.esig.body["printed_name"]

    @property
    def key_id(self) -> str:
        return self.esig.key

    def reference(self) -> dict[str, Any]:
        """``{alert_id, seq, sha256}`` of the e-signature: how a candidate names this approval."""
        esig = self.esig
        return {"alert_id": self.alert_id, "seq": esig.seq, "sha256": esig.digest}


def _approval_path(approvals_dir: str | os.PathLike, alert_id: str) -> Path:
    return Path(approvals_dir) / f"{alert_id}.json"


def _approval_text(approval: Approval) -> str:
    content = {"alert_id": approval.alert_id, "decision": approval.decision, "lines": list(approval.lines)}
    return json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_approvals(approvals_dir: str | os.PathLike) -> list[Approval]:
    """Every approval file in ``approvals_dir``, by alert id; a missing folder holds none.

    A file that cannot be read as an approval is returned with no lines, so
    :func:`check_approval` reports it instead of a reader crashing on it.
    """
    out = []
    for path in sorted(Path(approvals_dir).glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            approval = Approval(alert_id=str(raw["alert_id"]), decision=str(raw["decision"]),
                                lines=tuple(str(line) for line in raw["lines"]))
        except (OSError, ValueError, KeyError, TypeError):
            approval = Approval(alert_id=path.stem, decision="unreadable")
        if approval.alert_id != path.stem:
            approval = Approval(alert_id=path.stem, decision="misnamed")
        out.append(approval)
    return out


def check_approval(approval: Approval) -> Refusal | None:
    """Check an approval file offline; return why it does not count, or None if it holds.

    Its lines must pass :func:`clinval.ledger.check_excerpt` (canonical, signed by the keys
    their ``key_added`` lines register, a person's e-signature on a machine-recorded
    alert, bound to the alert line's digest); the e-signature must mean the file's
    decision and the alert line must record this alert. Membership in the ledger is not
    checked here (see the module docstring).
    """
    from clinval.ledger import DECIDABLE_KINDS, DECISIONS, ErrorCode, LedgerError, check_excerpt

    where = f"approval {approval.alert_id}"
    if approval.decision not in DECISIONS or not approval.lines:
        return Refusal(ErrorCode.MALFORMED, f"{where}: not an approval file written by clinval")
    try:
        excerpt = check_excerpt(line.encode("utf-8") for line in approval.lines)
    except LedgerError as exc:
        return Refusal(exc.code or ErrorCode.MALFORMED, f"{where}: {exc.message}")
    esigs = [e for e in excerpt.entries.values() if e.kind == "esig"]
    alerts = [e for e in excerpt.entries.values() if e.kind in DECIDABLE_KINDS]
    if len(esigs) != 1 or len(alerts) != 1:
        return Refusal(ErrorCode.MALFORMED, f"{where}: must hold one alert entry and one e-signature")
    esig, alert = esigs[0], alerts[0]
    if esig.body["target"].get("seq") != alert.seq:
        return Refusal(ErrorCode.DIGEST_MISMATCH, f"{where}: the signature is not bound to the alert's ledger entry")
    if esig.body["meaning"] != approval.decision:
        return Refusal(ErrorCode.MALFORMED, f"{where}: the signature's meaning is not {approval.decision!r}")
    if alert.body.get("alert_id") != approval.alert_id:
        return Refusal(GateCode.NOT_AN_ALERT, f"{where}: the signed ledger entry records a different alert")
    return None


def decisions_in(entries: Iterable[Any]) -> dict[str, Approval]:
    """The decision on each alert, by alert id, from ledger entries (in order, verified).

    The first ``approved`` or ``rejected`` e-signature on an alert entry is the decision
    (the ledger refuses a second); each is returned as the approval its cache file holds.
    """
    from clinval.ledger import DECIDABLE_KINDS, DECISIONS

    entries = list(entries)
    by_seq = {e.seq: e for e in entries}
    key_lines = {e.body.get("key_id"): e for e in entries if e.kind == "key_added"}
    decided: dict[str, Approval] = {}
    for esig in entries:
        if esig.kind != "esig" or esig.body.get("meaning") not in DECISIONS:
            continue
        alert = by_seq.get(esig.body.get("target", {}).get("seq"))
        if alert is None or alert.kind not in DECIDABLE_KINDS or alert.digest != esig.body["target"].get("sha256"):
            continue
        alert_id = alert.body.get("alert_id")
        if not isinstance(alert_id, str) or alert_id in decided:
            continue
        lines = [key_lines.get(alert.key), alert, key_lines.get(esig.key), esig]
        unique = sorted({e.seq: e for e in lines if e is not None}.values(), key=lambda e: e.seq)
        decided[alert_id] = Approval(alert_id=alert_id, decision=esig.body["meaning"],
                                     lines=tuple(e.line.decode("utf-8") for e in unique))
    return decided


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_approvals` changed in the cache."""

    written: tuple[str, ...]
    removed: tuple[str, ...]


def sync_approvals(entries: Iterable[Any], *, approvals_dir: str | os.PathLike) -> SyncResult:
    """Rebuild ``audit/approvals/`` from the ledger: one file per decided alert, nothing else.

    ``entries`` are the verified ledger's entries. Files whose content already matches are
    left untouched (so DVC sees no change); a file the ledger does not back (planted,
    edited, or of a decision that is not in the ledger) is replaced or removed.
    """
    folder = Path(approvals_dir)
    wanted = {alert_id: _approval_text(a) for alert_id, a in decisions_in(entries).items()}
    written, removed = [], []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        if path.stem not in wanted:
            path.unlink()
            removed.append(path.stem)
    for alert_id, text in sorted(wanted.items()):
        path = _approval_path(folder, alert_id)
        if not path.exists() or path.read_text(encoding="utf-8", errors="replace") != text:
            atomic_write_text(path, text)
            written.append(alert_id)
    return SyncResult(written=tuple(written), removed=tuple(removed))


def trusted_entries(ledger, *, trust: str | os.PathLike | None = None) -> tuple[list[Any], Any]:
    """The ledger's entries up to its first problem, and the verification result.

    Verification uses the ledger's local checkpoint when it exists and ``trust`` when
    given; a gate decision may rely only on the entries this returns.
    """
    from clinval.ledger import LedgerError, verify

    checkpoint = ledger.checkpoint_path
    verification = verify(ledger.path, checkpoint=checkpoint if checkpoint is not None and checkpoint.exists() else None,
                          trust=trust)
    entries = []
    try:
        for entry in ledger.entries():
            if not verification.trusted(entry.seq):
                break
            entries.append(entry)
    except LedgerError:
        pass  # a damaged line is beyond the first problem: nothing after it is trusted
    return entries, verification


def decide(*, ledger, signer, alert: Mapping[str, Any], decision: str, reason: str,
           approvals_dir: str | os.PathLike) -> Approval:
    """Sign a decision (``approved`` or ``rejected``) on a recorded alert; rebuild the cache.

    The ledger must verify first. The ledger itself refuses a machine identity's key
    (UNAUTHORIZED) and a second decision on the alert (DUPLICATE_DECISION), whatever the
    cache holds.

    Raises
    ------
    GateRefused
        NOT_RECORDED if the alert is not in the verified ledger yet (run
        ``clinval audit record`` first), or the verification code if the ledger fails.
    LedgerError
        If the ledger refuses the e-signature.
    """
    from clinval.ledger import DECIDABLE_KINDS
    from clinval.signing import esign

    entries, verification = trusted_entries(ledger)
    if not verification.ok:
        raise GateRefused(Refusal(verification.code, f"the ledger fails verification ({verification}); "
                                                     "nothing was signed"))
    recorded = [e for e in entries if e.kind in DECIDABLE_KINDS and e.body.get("alert_id") == alert["id"]]
    if not recorded:
        raise GateRefused(Refusal(GateCode.NOT_RECORDED, f"alert {alert['id']} is not in the audit ledger yet; run "
                                                         "`clinval audit record` after `dvc repro`, then sign."))
    entry = recorded[-1]
    esig = esign(ledger, signer=signer, target_ref=str(entry.seq), target_digest=entry.digest, meaning=decision,
                 reason=reason)
    sync_approvals([*entries, esig], approvals_dir=approvals_dir)
    return decisions_in([*entries, esig])[alert["id"]]
