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


def queue_file(alert_id: str) -> str:
    """The review-queue file of an alert (DVC-tracked data, never in reports/)."""
    return f"{REVIEW_QUEUE}/{alert_id}.parquet"


def candidate_model_file(candidate_id: str, model_file: str) -> str:
    """Where a built candidate's fitted model lies."""
    return f"{CANDIDATES}/{candidate_id}/{model_file}"
