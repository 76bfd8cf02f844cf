"""Stable error codes of the audit ledger and the exception raised on refused writes.

The codes are a public contract: scripts, CI and reviewers match on them, so a code is
never renamed or reused for another meaning. ``ERROR_CODES`` gives each a one-line
meaning; ``docs/ledger.md`` repeats the table.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Mapping

from clinval.errors import ClinvalError

__all__ = ["ERROR_CODES", "ErrorCode", "LedgerError"]


class ErrorCode(StrEnum):
    """A verification failure, compared equal to its own name (``code == "SEQ_GAP"``)."""

    PREV_MISMATCH = "PREV_MISMATCH"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    KEY_REVOKED = "KEY_REVOKED"
    NOT_CANONICAL = "NOT_CANONICAL"
    SEQ_GAP = "SEQ_GAP"
    TORN_TAIL = "TORN_TAIL"
    TRUNCATED = "TRUNCATED"
    INCONSISTENT = "INCONSISTENT"
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    DUPLICATE_SIGNATURE = "DUPLICATE_SIGNATURE"
    MALFORMED = "MALFORMED"
    UNAUTHORIZED = "UNAUTHORIZED"
    BAD_CHECKPOINT = "BAD_CHECKPOINT"
    DUPLICATE_DECISION = "DUPLICATE_DECISION"
    UNTRUSTED_ROOT = "UNTRUSTED_ROOT"


ERROR_CODES: Mapping[ErrorCode, str] = MappingProxyType(
    {
        ErrorCode.PREV_MISMATCH: "an entry's prev is not the SHA-256 of the stored line before it",
        ErrorCode.BAD_SIGNATURE: "an entry's Ed25519 signature does not verify with its key",
        ErrorCode.UNKNOWN_KEY: "an entry is signed by a key not registered to its actor",
        ErrorCode.KEY_REVOKED: "an entry is signed by a key revoked at an earlier seq",
        ErrorCode.NOT_CANONICAL: "a stored line is not the RFC 8785 form of its value, or breaks the length, depth or integer limits",
        ErrorCode.SEQ_GAP: "an entry's seq is not its line number (deleted or reordered lines)",
        ErrorCode.TORN_TAIL: "the last line is incomplete (a crash mid-append); see audit recover",
        ErrorCode.TRUNCATED: "the ledger is shorter than a checkpoint that vouched for it",
        ErrorCode.INCONSISTENT: "the ledger does not extend the checkpoint (rewritten history)",
        ErrorCode.DIGEST_MISMATCH: "a recorded digest differs from what it names (entry or file)",
        ErrorCode.DUPLICATE_SIGNATURE: "the same (signer, target digest, meaning) was signed twice",
        ErrorCode.MALFORMED: "a canonical line is not a well-formed entry (fields, kind, body)",
        ErrorCode.UNAUTHORIZED: "a key made an entry the key rules do not allow it to make",
        ErrorCode.BAD_CHECKPOINT: "a checkpoint is unreadable, badly signed or not from the ledger",
        ErrorCode.DUPLICATE_DECISION: "an alert already decided (approved or rejected) was decided again",
        ErrorCode.UNTRUSTED_ROOT: "the ledger does not start from the genesis key a trust root pins",
    }
)


class LedgerError(ClinvalError):
    """An append, record or recovery the ledger refused, or a ledger it cannot read.

    Parameters
    ----------
    message : str
        What went wrong and what to do about it, for a person.
    code : ErrorCode or None
        The verification code the refused operation would have caused, if any.
    seq : int or None
        The seq the problem concerns, if any.
    """

    def __init__(
        self, message: str, *, code: ErrorCode | None = None, seq: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.seq = seq

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        where = "" if self.seq is None else f" at seq {self.seq}"
        return f"{self.code}{where}: {self.message}"
