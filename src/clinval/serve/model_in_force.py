"""Which model the service answers with, checked against the audit ledger before it loads.

The model in force is the latest ``model_version`` (a promoted candidate) in the ledger,
else the locked model as the latest ``pipeline_run`` recorded it. The ledger must verify
(chain, signatures, checkpoint) and the file on disk must hash to the digest its signed
entry holds; otherwise the service does not start. Nothing here decides which model
*should* be in force: promotion is the review gate's decision, recorded in the ledger.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import joblib

from clinval import layout
from clinval._io import sha256_file, sha256_path
from clinval.data import Schema
from clinval.errors import ClinvalError
from clinval.ledger import CHECKPOINT_FILE, verify
from clinval.serve.scorer import CompiledScorer, compile_model

__all__ = ["ModelInForce", "ServeRefused", "model_in_force"]

LOCKED_MODEL_FILE = "model.joblib"
MSG_LEDGER = "the audit ledger {path} does not verify ({result}); the service serves nothing it cannot trace"
MSG_NO_ENTRY = (
    "the ledger {path} records no model: no model_version entry and no pipeline_run with output {locked}; "
    "run `make run` (or `dvc repro` and `clinval audit record`) first"
)
MSG_DIGEST = (
    "{path} hashes to {found}, not the {expected} its signed ledger entry (seq {seq}, {kind}) holds; "
    "the model on disk is not the model the ledger records"
)
MSG_MISSING = "{path} is missing; the ledger (seq {seq}, {kind}) records it as the model in force"
MSG_FEATURES = (
    "the model in force ({model_id}) takes features {model_features}, but {study} describes {study_features}; "
    "the request schema is generated from the study"
)


class ServeRefused(ClinvalError):
    """The service must not start: the message says why, in one paragraph."""


@dataclass(frozen=True)
class ModelInForce:
    """The model the service answers with, and where its authority comes from.

    Attributes
    ----------
    id : str
        ``locked`` or the promoted candidate's id.
    sha256 : str
        Digest of the model as its ledger entry holds it (a directory hashes as a tree).
    path : str
        The recorded path, relative to the root.
    ledger_seq : int
        Seq of the entry that records it.
    ledger_head : str
        Head of the ledger the service verified at start.
    ledger_size : int
        Entries in that ledger.
    scorer : CompiledScorer
        The model, compiled.
    """

    id: str
    sha256: str
    path: str
    ledger_seq: int
    ledger_head: str
    ledger_size: int
    scorer: CompiledScorer


def model_in_force(
    *,
    root: str | os.PathLike[str],
    ledger_path: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str] | None,
    schema: Schema,
    study_path: str = layout.STUDY,
    locked: str = layout.LOCKED_MODEL,
) -> ModelInForce:
    """Verify the ledger, find the model in force, check its digest, load and compile it.

    Raises
    ------
    ServeRefused
        If the ledger does not verify, records no model, the file differs from its
        digest, or the model's features differ from the study's.
    """
    from clinval.ledger import Ledger

    root = Path(root)
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
    result = verify(ledger_path, checkpoint=checkpoint if checkpoint is not None and checkpoint.exists() else None)
    if not result.ok or result.head is None:
        raise ServeRefused(MSG_LEDGER.format(path=ledger_path, result=result))
    entries = list(Ledger(path=ledger_path).entries())[: result.size]
    promoted = [e for e in entries if e.kind == "model_version"]
    if promoted:
        entry = promoted[-1]
        reference = entry.body["model_file"]
        model_id, model_file = str(entry.body["candidate_id"]), root / reference["path"]
    else:
        runs = [(e, o) for e in entries if e.kind == "pipeline_run" for o in e.body.get("outputs", []) if o.get("path") == locked]
        if not runs:
            raise ServeRefused(MSG_NO_ENTRY.format(path=ledger_path, locked=locked))
        entry, reference = runs[-1]
        model_id, model_file = "locked", root / reference["path"] / LOCKED_MODEL_FILE
    recorded = root / reference["path"]
    if not recorded.exists():
        raise ServeRefused(MSG_MISSING.format(path=recorded, seq=entry.seq, kind=entry.kind))
    loaded = model_file.read_bytes()
    found = sha256_path(recorded)
    # the bytes loaded must be the bytes hashed: a file swapped in between is refused too
    if found != reference["sha256"] or hashlib.sha256(loaded).hexdigest() != sha256_file(model_file):
        raise ServeRefused(MSG_DIGEST.format(path=recorded, found=found, expected=reference["sha256"], seq=entry.seq, kind=entry.kind))
    scorer = compile_model(joblib.load(io.BytesIO(loaded)))
    if (scorer.numeric, scorer.categorical) != (schema.numeric, schema.categorical):
        raise ServeRefused(MSG_FEATURES.format(model_id=model_id, model_features=list(scorer.features),
                                               study=study_path, study_features=list(schema.features)))
    return ModelInForce(id=model_id, sha256=reference["sha256"], path=reference["path"], ledger_seq=entry.seq,
                        ledger_head=result.head, ledger_size=result.size, scorer=scorer)
