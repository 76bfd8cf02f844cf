"""Signed checkpoints: (size, head hash) statements a verifier can keep.

After every append the writer signs ``{size, head}`` and replaces
``<checkpoint_dir>/latest.json``. Anyone may copy that file away. Later,
``verify(checkpoint=copy)`` proves the ledger only grew since: it still holds at least
``size`` entries (else TRUNCATED) and its entry ``size - 1`` still hashes to ``head``
(else INCONSISTENT: history was rewritten, even if every entry was re-signed).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinval.errors import ClinvalError
from clinval.ledger._encoding import (
    HEX64,
    NotCanonical,
    b64decode_exact,
    b64encode,
    canonical,
    is_utc_time,
    key_fingerprint,
    parse_canonical,
    utc_now,
)
from clinval.ledger._entry import ACTOR_PATTERN, SIGNATURE_BYTES

__all__ = ["CHECKPOINT_FILE", "Checkpoint", "KeySigner", "read_checkpoint", "write_checkpoint"]

CHECKPOINT_FILE = "latest.json"
CHECKPOINT_DOMAIN = b"clinval-ledger-checkpoint-v1\n"
CHECKPOINT_FIELDS = frozenset({"head", "key", "public_key", "sig", "signer", "size", "time"})

MSG_UNREADABLE = "checkpoint {path} cannot be read: {reason}"
MSG_SHAPE = "checkpoint {path} is not a checkpoint: {reason}"
MSG_SIGNATURE = "checkpoint {path} signature does not verify"


class CheckpointError(ClinvalError, ValueError):
    """A checkpoint file that cannot be trusted as a statement about a ledger."""


class KeySigner(Protocol):
    """What signs a checkpoint or a witness statement: an unlocked key and its identity."""

    user_id: str
    key_id: str
    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that a ledger had ``size`` entries ending in ``head``.

    Attributes
    ----------
    size : int
        Number of entries covered (seqs ``0 .. size - 1``).
    head : str
        Hex SHA-256 of the stored line of seq ``size - 1``.
    time : str
        UTC time the checkpoint was signed.
    signer, key : str
        User id and key id of the signer; the ledger must register that key.
    public_key : bytes
        The raw signer key, so the signature can be checked before the ledger is read.
    """

    size: int
    head: str
    time: str
    signer: str
    key: str
    public_key: bytes


def _unsigned(size: int, head: str, time: str, signer: str, key: str, public_key: bytes) -> dict:
    return {
        "head": head,
        "key": key,
        "public_key": b64encode(public_key),
        "signer": signer,
        "size": size,
        "time": time,
    }


def write_checkpoint(directory: Path, *, size: int, head: str, signer: KeySigner) -> Path:
    """Sign ``(size, head)`` and atomically replace ``directory/latest.json``.

    The file is written to a temporary name, fsynced and renamed, so a reader sees the
    old or the new checkpoint, never a mix.
    """
    directory.mkdir(parents=True, exist_ok=True)
    unsigned = _unsigned(size, head, utc_now(), signer.user_id, signer.key_id, signer.public_key)
    signature = signer.sign(CHECKPOINT_DOMAIN + canonical(unsigned))
    data = canonical({**unsigned, "sig": b64encode(signature)}) + b"\n"
    target = directory / CHECKPOINT_FILE
    handle, temp_name = tempfile.mkstemp(dir=directory, prefix=".latest-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        # The file is fsynced, the rename is not: after a power cut the previous
        # checkpoint may come back, which still describes a prefix of the ledger.
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file and check its own signature.

    Whether the signer's key belongs to the ledger is checked by ``verify``.

    Raises
    ------
    CheckpointError
        If the file is unreadable, not a canonical checkpoint, or badly signed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(MSG_UNREADABLE.format(path=path, reason=exc.strerror)) from None
    try:
        value = parse_canonical(data.removesuffix(b"\n"))
    except NotCanonical as exc:
        raise CheckpointError(MSG_SHAPE.format(path=path, reason=exc)) from None
    reason = _shape_problem(value)
    if reason is not None:
        raise CheckpointError(MSG_SHAPE.format(path=path, reason=reason))
    public_key = b64decode_exact(value["public_key"], 32) or b""
    unsigned = {name: value[name] for name in CHECKPOINT_FIELDS - {"sig"}}
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            b64decode_exact(value["sig"], SIGNATURE_BYTES) or b"",
            CHECKPOINT_DOMAIN + canonical(unsigned),
        )
    except (InvalidSignature, ValueError):
        raise CheckpointError(MSG_SIGNATURE.format(path=path)) from None
    return Checkpoint(
        size=value["size"],
        head=value["head"],
        time=value["time"],
        signer=value["signer"],
        key=value["key"],
        public_key=public_key,
    )


def _shape_problem(value: Any) -> str | None:
    if not isinstance(value, dict) or value.keys() != CHECKPOINT_FIELDS:
        return f"members must be exactly {sorted(CHECKPOINT_FIELDS)}"
    if type(value["size"]) is not int or value["size"] < 1:
        return "size must be an integer >= 1"
    if not isinstance(value["head"], str) or not HEX64.fullmatch(value["head"]):
        return "head must be 64 lowercase hex digits"
    if not isinstance(value["time"], str) or not is_utc_time(value["time"]):
        return "time must be a UTC time stamp"
    if not isinstance(value["signer"], str) or not ACTOR_PATTERN.fullmatch(value["signer"]):
        return "signer must be a user id"
    public_key = b64decode_exact(value["public_key"], 32)
    if public_key is None or value["key"] != key_fingerprint(public_key):
        return "key must be the fingerprint of public_key"
    if b64decode_exact(value["sig"], SIGNATURE_BYTES) is None:
        return "sig must be base64 of a 64-byte signature"
    return None

