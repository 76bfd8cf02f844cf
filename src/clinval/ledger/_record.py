"""Record what a pipeline run produced, once per distinct run.

After ``dvc repro`` the pipeline has written ``dvc.lock`` and ``reports/*.json``.
:func:`record_run` appends, all under one ledger lock:

* a ``pipeline_run`` entry when ``dvc.lock``'s SHA-256 differs from the last recorded
  run: the lock digest and, for every stage output, its path, DVC's md5 and our own
  SHA-256 (a directory hashes as ``tree_sha256``);
* for each alert in a report whose id is new, a ``drift_alert`` or ``fairness_alert``
  entry, then a ``data_pull`` entry naming the review-queue file and its SHA-256;
* for each candidate not recorded with the same facts before, a ``retrain`` entry: the
  model's digest and what the gate decides on (the alerts and the signed approvals it
  was built from, the plan's digest, training and sequestered periods, each acceptance
  criterion's result and the verdict), so promotion never reads them from a file.

Recording the same state again appends nothing. Nothing is recorded when an output
differs from the md5 ``dvc.lock`` holds for it: it was edited after ``dvc repro``, and
recording it would have the pipeline vouch for bytes it did not produce.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from clinval.ledger._encoding import check_relative_path, path_sha256, sha256_hex
from clinval.ledger._errors import LedgerError
from clinval.ledger._keys import key_added_body
from clinval.ledger._state import retrain_fingerprint

if TYPE_CHECKING:
    import os

    from clinval.ledger._entry import Entry
    from clinval.ledger._state import ChainState
    from clinval.ledger._store import Ledger, Signs

__all__ = ["RecordResult", "record_run"]

ALERT_KINDS = {"drift": "drift_alert", "fairness": "fairness_alert"}
_ALERT_FIELDS = ("trigger", "period", "summary")
_CANDIDATE_FIELDS = (
    "modification",
    "training_data_digest",
    "alert_ids",
    "approvals",
    "plan_sha256",
    "training_periods",
    "sequestered_periods",
    "criteria",
    "decision",
)

MSG_NO_LOCK = "no {path}: run `dvc repro` first (nothing to record)"
MSG_BAD_LOCK = "{path} is not a DVC lock file: {reason}"
MSG_BAD_REPORT = "report {path} is not a JSON object: {reason}"
MSG_OUT_PATH = "{lock}: stage {stage!r} output {path!r} cannot be recorded: {problem}"
MSG_OUT_CHANGED = (
    "{path} (output of stage {stage!r}) has md5 {found}, not the {expected} that {lock} "
    "records: it changed after `dvc repro`. Restore it (`dvc checkout {path}`) or re-run "
    "`dvc repro`; nothing was recorded"
)
MSG_SIGNER_CONFLICT = (
    "actor {user!r} already has a registered key that is not this machine's key {key}; "
    "use that key here (copy its key file into the key store), register this key with "
    "an endorsement (`clinval keys init --endorse-by ...`), or record as another --actor"
)
WARN_OUT_MISSING = "{path}: output of stage {stage!r} is missing; recorded without a digest"
WARN_ALERT_ID = "{report}: alert #{index} has no string id; not recorded"
WARN_ALERT_KIND = "{report}: alert {id!r} has kind {kind!r}, not drift or fairness; not recorded"
WARN_QUEUE_MISSING = "{report}: review queue file {path} of alert {id!r} is missing; pull not recorded yet"
WARN_CANDIDATE_ID = "{report}: candidate #{index} has no string id; not recorded"
WARN_MODEL_MISSING = "{report}: model file {path} of candidate {id!r} is missing; not recorded yet"


@dataclass(frozen=True)
class RecordResult:
    """What :func:`record_run` appended and what it had to leave out.

    Attributes
    ----------
    appended : tuple of Entry
        New entries in order; empty when the run was already recorded.
    warnings : tuple of str
        Inputs that were incomplete (missing files, alerts without ids).
    """

    appended: tuple[Entry, ...]
    warnings: tuple[str, ...]


def record_run(
    ledger: Ledger,
    *,
    signer: Signs,
    root: str | os.PathLike[str],
    dvc_lock: str = "dvc.lock",
    reports_dir: str = "reports",
) -> RecordResult:
    """Append what the last ``dvc repro`` produced, skipping what is already recorded.

    Parameters
    ----------
    ledger : Ledger
        The ledger to append to.
    signer : Signer
        The recording actor (the ``pipeline`` key). On an empty ledger, or when the
        actor has no key yet, its key is registered first, as a machine identity (on an
        empty ledger, the genesis entry).
    root : str or os.PathLike
        Repository root; ``dvc_lock``, ``reports_dir`` and every recorded path are
        relative to it.
    dvc_lock, reports_dir : str
        Relative locations of the DVC lock file and the evidence records.

    Returns
    -------
    RecordResult

    Raises
    ------
    LedgerError
        If ``dvc.lock`` or a report cannot be read, an output differs from its md5 in
        ``dvc.lock``, or the ledger refuses an append.
    """
    base = Path(root)
    # Read every input before appending anything, so a bad input records nothing.
    lock_bytes, stages = _read_lock(base / dvc_lock)
    _check_outputs(base, dvc_lock, stages)
    reports = _read_reports(base, reports_dir)
    appended: list[Entry] = []
    warnings: list[str] = []
    with ledger._locked():
        ledger._refresh(strict_tail=True)
        state = ledger._state

        def append(kind: str, body: dict[str, Any]) -> None:
            appended.append(ledger._append_locked(kind=kind, body=body, signer=signer))

        if signer.key_id not in state.keys:
            if state.keys_of_user.get(signer.user_id):
                raise LedgerError(MSG_SIGNER_CONFLICT.format(user=signer.user_id, key=signer.key_id))
            append("key_added", key_added_body(signer, role="machine"))
        lock_digest = sha256_hex(lock_bytes)
        if state.last_run_lock != lock_digest:
            body = _run_body(base, dvc_lock, lock_digest, stages, reports_dir, warnings)
            append("pipeline_run", body)
        for report_path, report in reports:
            _record_alerts(base, report_path, report, state, append, warnings)
            _record_candidates(base, report_path, report, state, append, warnings)
    return RecordResult(appended=tuple(appended), warnings=tuple(warnings))


def _read_lock(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LedgerError(MSG_NO_LOCK.format(path=path)) from None
    try:
        # BaseLoader keeps every scalar a string: an all-digit md5 stays as DVC wrote it.
        parsed = yaml.load(data, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise LedgerError(MSG_BAD_LOCK.format(path=path, reason=exc)) from None
    stages = parsed.get("stages") if isinstance(parsed, dict) else None
    if not isinstance(stages, dict):
        raise LedgerError(MSG_BAD_LOCK.format(path=path, reason="no 'stages' mapping"))
    return data, stages


def dvc_md5(path: Path) -> str:
    """The md5 DVC records for an output: of a file's bytes; for a directory, of its
    ``.dir`` manifest (JSON list of ``{md5, relpath}`` sorted by path) plus ``.dir``."""
    if not path.is_dir():
        return _md5_file(path)
    files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    manifest = [{"md5": _md5_file(p), "relpath": relative} for relative, p in files]
    return hashlib.md5(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_outputs(base: Path, lock_name: str, stages: dict[str, Any]) -> None:
    """Refuse to record an output that is not the one ``dvc.lock`` describes."""
    for stage in sorted(stages):
        spec = stages[stage] if isinstance(stages[stage], dict) else {}
        for out in spec.get("outs") or []:
            # DVC 3 marks its plain md5 with `hash: md5` (DVC 2 normalised line endings).
            if not isinstance(out, dict) or out.get("hash") != "md5":
                continue
            relative, expected = out.get("path"), out.get("md5")
            if not isinstance(relative, str) or not isinstance(expected, str):
                continue
            full = base / relative
            if check_relative_path(relative) is not None or not full.exists():
                continue  # refused or warned about when the run body is built
            found = dvc_md5(full)
            if found != expected:
                raise LedgerError(
                    MSG_OUT_CHANGED.format(
                        path=relative, stage=stage, found=found, expected=expected, lock=lock_name
                    )
                )


def _run_body(
    base: Path,
    lock_name: str,
    lock_digest: str,
    stages: dict[str, Any],
    reports_dir: str,
    warnings: list[str],
) -> dict[str, Any]:
    outputs = []
    for stage in sorted(stages):
        spec = stages[stage] if isinstance(stages[stage], dict) else {}
        for out in spec.get("outs") or []:
            if not isinstance(out, dict) or not isinstance(out.get("path"), str):
                continue
            relative = out["path"]
            problem = check_relative_path(relative)
            if problem is not None:
                raise LedgerError(
                    MSG_OUT_PATH.format(lock=lock_name, stage=stage, path=relative, problem=problem)
                )
            full = base / relative
            exists = full.exists()
            if not exists:
                warnings.append(WARN_OUT_MISSING.format(path=relative, stage=stage))
            outputs.append(
                {
                    "md5": out.get("md5") if isinstance(out.get("md5"), str) else None,
                    "path": relative,
                    "sha256": path_sha256(full) if exists else None,
                    "stage": stage,
                    "type": "dir" if full.is_dir() else "file",
                }
            )
    reports = [
        {"path": path.relative_to(base).as_posix(), "sha256": path_sha256(path)}
        for path in sorted((base / reports_dir).glob("*.json"))
    ]
    return {
        "dvc_lock": {"path": lock_name, "sha256": lock_digest},
        "outputs": outputs,
        "reports": reports,
    }


def _read_reports(base: Path, reports_dir: str) -> list[tuple[str, dict[str, Any]]]:
    reports = []
    for path in sorted((base / reports_dir).glob("*.json")):
        relative = path.relative_to(base).as_posix()
        try:
            value = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LedgerError(MSG_BAD_REPORT.format(path=relative, reason=exc)) from None
        if not isinstance(value, dict):
            raise LedgerError(MSG_BAD_REPORT.format(path=relative, reason="top level is not an object"))
        reports.append((relative, value))
    return reports


def _reference(base: Path, relative: Any) -> dict[str, Any] | None:
    """Return ``{path, sha256}`` for an existing file inside the root, else None."""
    if check_relative_path(relative) is not None:
        return None
    full = base / relative
    if not full.exists():
        return None
    return {"path": relative, "sha256": path_sha256(full)}


def _record_alerts(
    base: Path,
    report_path: str,
    report: dict[str, Any],
    state: ChainState,
    append: Callable[[str, dict[str, Any]], None],
    warnings: list[str],
) -> None:
    alerts = report.get("alerts")
    if not isinstance(alerts, list):
        return
    report_ref = _reference(base, report_path)
    for index, alert in enumerate(alerts):
        alert_id = alert.get("id") if isinstance(alert, dict) else None
        if not isinstance(alert_id, str) or not alert_id:
            warnings.append(WARN_ALERT_ID.format(report=report_path, index=index))
            continue
        if alert_id not in state.alert_ids:
            kind = ALERT_KINDS.get(alert.get("kind"))
            if kind is None:
                warnings.append(
                    WARN_ALERT_KIND.format(report=report_path, id=alert_id, kind=alert.get("kind"))
                )
                continue
            body = {"alert_id": alert_id, "report": report_ref}
            body.update({name: alert[name] for name in _ALERT_FIELDS if name in alert})
            append(kind, body)
        queue_file = alert.get("queue_file")
        if queue_file is None or alert_id in state.pull_alert_ids:
            continue
        queue_ref = _reference(base, queue_file)
        if queue_ref is None:
            warnings.append(
                WARN_QUEUE_MISSING.format(report=report_path, path=queue_file, id=alert_id)
            )
            continue
        body = {"alert_id": alert_id, "queue_file": queue_ref}
        if isinstance(alert.get("n_records"), int):
            body["n_records"] = alert["n_records"]
        append("data_pull", body)


def _record_candidates(
    base: Path,
    report_path: str,
    report: dict[str, Any],
    state: ChainState,
    append: Callable[[str, dict[str, Any]], None],
    warnings: list[str],
) -> None:
    candidates = report.get("candidates")
    if not isinstance(candidates, list):
        return
    for index, candidate in enumerate(candidates):
        candidate_id = candidate.get("id") if isinstance(candidate, dict) else None
        if not isinstance(candidate_id, str) or not candidate_id:
            warnings.append(WARN_CANDIDATE_ID.format(report=report_path, index=index))
            continue
        model_ref = _reference(base, candidate.get("model_file"))
        if model_ref is None:
            warnings.append(
                WARN_MODEL_MISSING.format(
                    report=report_path, path=candidate.get("model_file"), id=candidate_id
                )
            )
            continue
        body = {"candidate_id": candidate_id, "model_file": model_ref, "source": report_path}
        body.update({name: candidate[name] for name in _CANDIDATE_FIELDS if name in candidate})
        report = candidate.get("report")
        if check_relative_path(report) is None:
            body["report"] = _reference(base, report) or {"path": report, "sha256": None}
        if retrain_fingerprint(body) not in state.retrain_facts:
            append("retrain", body)
