"""Where the workbook keeps things: the repository layout of dvc.yaml, named once.

Domain modules take paths as arguments; these are the defaults the command line, the
serving process and the records use, and the paths written into records (an alert's queue
file, a candidate's model file) so a reviewer can find them. Keep them in step with
dvc.yaml. Imports nothing.
"""

from __future__ import annotations

__all__ = [
    "APPROVALS", "CANDIDATES", "CHECKPOINTS", "KEYS", "LEDGER", "LOCKED_MODEL", "PLAN", "PREDICTIONS",
    "REPORTS", "REVIEW_QUEUE", "STUDY", "candidate_model_file", "queue_file",
    "REFERENCE_FILE", "REFERENCE_DESCRIPTION", "PRODUCTION_FILE", "STUDY_FILE", "HOLDOUT_FILE",
    "PRODUCTION_PREDICTIONS_FILE",
]

STUDY = "params/study.yaml"
PLAN = "params/pccp.yaml"
LOCKED_MODEL = "models/locked"
CANDIDATES = "models/candidates"
REVIEW_QUEUE = "data/review_queue"
PREDICTIONS = "data/predictions"
REPORTS = "reports"
LEDGER = "audit/ledger.jsonl"
CHECKPOINTS = "audit/checkpoints"
KEYS = "audit/keys"
APPROVALS = "audit/approvals"

# the files of a prepared study (stage prepare) and of the prediction log (stage score): the
# reference period's lie apart from the production periods', so train and profile, which
# depend on them only, do not re-run when a production period is added
REFERENCE_FILE = "reference.parquet"
"""The reference period's records, in the prepared study's folder."""
REFERENCE_DESCRIPTION = "reference.json"
"""The study's schema and the reference period's metadata, beside :data:`REFERENCE_FILE`."""
PRODUCTION_FILE = "production.parquet"
"""The production periods' records, in the prepared study's folder."""
STUDY_FILE = "study.json"
"""The production periods and the source's metadata, in the prepared study's folder."""
HOLDOUT_FILE = "holdout.parquet"
"""The reference hold-out's predictions (``period == "reference"``), in the scored folder."""
PRODUCTION_PREDICTIONS_FILE = "production.parquet"
"""Every production period's predictions, in the scored folder."""


def queue_file(alert_id: str) -> str:
    """The review-queue file of an alert (DVC-tracked data, never in reports/)."""
    return f"{REVIEW_QUEUE}/{alert_id}.parquet"


def candidate_model_file(candidate_id: str, model_file: str) -> str:
    """Where a built candidate's fitted model lies."""
    return f"{CANDIDATES}/{candidate_id}/{model_file}"
