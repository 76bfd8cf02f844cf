"""A reviewer's trust root: the genesis key and ledger heads pinned outside the system.

A checkpoint in ``audit/checkpoints/`` is signed by whoever appended last, so a person who
rebuilds the whole ledger with fresh keys also rebuilds its checkpoints: the rebuilt
ledger verifies. What catches it is something kept where that person cannot write. A
*trust root* file is that thing::

    {"format": "clinval-trust-root-v1",
     "genesis_key": "<key id of seq 0>",
     "witnesses": [{"key": "<key id>", "public_key": "<base64>", "user_id": "qa"}],
     "heads": [{"size": 42, "head": "<sha256 of seq 41>",
                "cosignatures": [{"key": "<witness key id>", "time": "...", "sig": "<base64>"}]}]}

``verify(trust=FILE)`` requires seq 0 to register ``genesis_key`` (UNTRUSTED_ROOT) and
the ledger to extend every pinned head (TRUNCATED, INCONSISTENT); every cosignature must
verify with a listed witness key (BAD_CHECKPOINT). A head may carry no cosignature: a
reviewer who copied the size and head from a submitted PCCP report pins it as it is.

A *witness* (``clinval audit witness``, run by QA with its own key) verifies the ledger,
then cosigns ``b"clinval-ledger-witness-v1\\n"`` + canonical ``{genesis_key, head, key,
size, time}`` and adds the head to the trust root. Witness keys are deliberately not
registered in the ledger: a rebuilt ledger cannot mint one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinval.ledger._encoding import (
    HEX64,
    b64decode_exact,
    b64encode,
    canonical,
    is_utc_time,
    key_fingerprint,
    sha256_hex,
    utc_now,
)
from clinval.ledger._checkpoint import KeySigner
from clinval.ledger._entry import ACTOR_PATTERN, KEY_ID_PATTERN, SIGNATURE_BYTES
from clinval.ledger._errors import ErrorCode, LedgerError

__all__ = ["TRUST_FORMAT", "Cosignature", "PinnedHead", "TrustRoot", "Witness", "cosign",
           "read_trust_root", "trust_findings", "write_trust_root"]

TRUST_FORMAT = "clinval-trust-root-v1"
WITNESS_DOMAIN = b"clinval-ledger-witness-v1\n"

MSG_UNREADABLE = "trust root {path} cannot be read: {reason}"
MSG_SHAPE = "trust root {path} is not a trust root: {reason}"
MSG_COSIGNATURE = "trust root {path}: the cosignature by key {key} on head {size} does not verify"


@dataclass(frozen=True)
class Witness:
    """A key whose cosignatures the trust root accepts."""

    key: str
    public_key: bytes = field(repr=False)
    user_id: str


@dataclass(frozen=True)
class Cosignature:
    """A witness's signature on a pinned head."""

    key: str
    time: str
    sig: bytes = field(repr=False)


@dataclass(frozen=True)
class PinnedHead:
    """A ledger state the ledger must extend: ``size`` entries, the last hashing to ``head``."""

    size: int
    head: str
    cosignatures: tuple[Cosignature, ...] = ()


@dataclass(frozen=True)
class TrustRoot:
    """The genesis key and pinned heads a reviewer keeps off-system."""

    genesis_key: str
    witnesses: tuple[Witness, ...] = ()
    heads: tuple[PinnedHead, ...] = ()

    def with_cosigned_head(self, *, size: int, head: str, witness: Witness, cosignature: Cosignature) -> TrustRoot:
        """A copy with ``witness`` listed and its cosignature on ``(size, head)`` added."""
        witnesses = self.witnesses + (() if any(w.key == witness.key for w in self.witnesses) else (witness,))
        heads = list(self.heads)
        for index, pinned in enumerate(heads):
            if (pinned.size, pinned.head) == (size, head):
                heads[index] = PinnedHead(size, head, pinned.cosignatures + (cosignature,))
                break
        else:
            heads.append(PinnedHead(size, head, (cosignature,)))
        return TrustRoot(self.genesis_key, witnesses, tuple(sorted(heads, key=lambda h: h.size)))


def _witness_message(*, genesis_key: str, size: int, head: str, key: str, time: str) -> bytes:
    statement = {"genesis_key": genesis_key, "head": head, "key": key, "size": size, "time": time}
    return WITNESS_DOMAIN + canonical(statement)


def cosign(*, genesis_key: str, size: int, head: str, signer: KeySigner) -> tuple[Witness, Cosignature]:
    """Sign that the ledger starting from ``genesis_key`` had ``size`` entries ending in ``head``."""
    time = utc_now()
    message = _witness_message(genesis_key=genesis_key, size=size, head=head, key=signer.key_id, time=time)
    witness = Witness(key=signer.key_id, public_key=signer.public_key, user_id=signer.user_id)
    return witness, Cosignature(key=signer.key_id, time=time, sig=signer.sign(message))


def read_trust_root(path: str | os.PathLike[str]) -> TrustRoot:
    """Read a trust root file and check every cosignature in it.

    Raises
    ------
    LedgerError
        BAD_CHECKPOINT if the file is unreadable, malformed, or a cosignature does not
        verify with a listed witness key.
    """
    path = Path(path)
    try:
        # Any JSON spelling: a reviewer may type one from a submitted report; what is
        # signed (a cosignature) is recomputed canonically.
        value = json.loads(path.read_bytes())
    except OSError as exc:
        raise LedgerError(MSG_UNREADABLE.format(path=path, reason=exc.strerror), code=ErrorCode.BAD_CHECKPOINT) from None
    except (ValueError, RecursionError) as exc:
        raise LedgerError(MSG_SHAPE.format(path=path, reason=f"not JSON ({exc})"), code=ErrorCode.BAD_CHECKPOINT) from None
    try:
        root = _parse(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerError(MSG_SHAPE.format(path=path, reason=exc), code=ErrorCode.BAD_CHECKPOINT) from None
    keys = {w.key: w for w in root.witnesses}
    for pinned in root.heads:
        for co in pinned.cosignatures:
            witness = keys.get(co.key)
            message = _witness_message(genesis_key=root.genesis_key, size=pinned.size, head=pinned.head,
                                       key=co.key, time=co.time)
            try:
                if witness is None:
                    raise InvalidSignature
                Ed25519PublicKey.from_public_bytes(witness.public_key).verify(co.sig, message)
            except (InvalidSignature, ValueError):
                raise LedgerError(MSG_COSIGNATURE.format(path=path, key=co.key, size=pinned.size),
                                  code=ErrorCode.BAD_CHECKPOINT) from None
    return root


def _parse(value: Any) -> TrustRoot:
    if not isinstance(value, dict) or value.get("format") != TRUST_FORMAT:
        raise ValueError(f"format must be {TRUST_FORMAT!r}")
    if set(value) - {"format", "genesis_key", "witnesses", "heads"}:
        raise ValueError("members must be format, genesis_key, witnesses, heads")
    genesis = value["genesis_key"]
    if not isinstance(genesis, str) or not KEY_ID_PATTERN.fullmatch(genesis):
        raise ValueError("genesis_key must be a key id (32 hex digits)")
    witnesses = []
    for raw in value.get("witnesses", []):
        public_key = b64decode_exact(raw["public_key"], 32)
        if public_key is None or raw["key"] != key_fingerprint(public_key):
            raise ValueError("a witness key must be the fingerprint of its public_key")
        if not isinstance(raw["user_id"], str) or not ACTOR_PATTERN.fullmatch(raw["user_id"]):
            raise ValueError("a witness needs a user_id")
        witnesses.append(Witness(key=raw["key"], public_key=public_key, user_id=raw["user_id"]))
    heads = []
    for raw in value.get("heads", []):
        if type(raw["size"]) is not int or raw["size"] < 1:
            raise ValueError("a head's size must be an integer >= 1")
        if not isinstance(raw["head"], str) or not HEX64.fullmatch(raw["head"]):
            raise ValueError("a head must be 64 lowercase hex digits")
        cosignatures = []
        for co in raw.get("cosignatures", []):
            sig = b64decode_exact(co["sig"], SIGNATURE_BYTES)
            if sig is None or not isinstance(co["time"], str) or not is_utc_time(co["time"]):
                raise ValueError("a cosignature needs a UTC time and a base64 signature")
            cosignatures.append(Cosignature(key=co["key"], time=co["time"], sig=sig))
        heads.append(PinnedHead(raw["size"], raw["head"], tuple(cosignatures)))
    return TrustRoot(genesis, tuple(witnesses), tuple(heads))


def write_trust_root(path: str | os.PathLike[str], root: TrustRoot) -> Path:
    """Write ``root`` as canonical JSON (one line) to ``path``, replacing it atomically."""
    value: dict[str, Any] = {
        "format": TRUST_FORMAT,
        "genesis_key": root.genesis_key,
        "heads": [
            {"cosignatures": [{"key": c.key, "sig": b64encode(c.sig), "time": c.time} for c in h.cosignatures],
             "head": h.head, "size": h.size}
            for h in root.heads
        ],
        "witnesses": [{"key": w.key, "public_key": b64encode(w.public_key), "user_id": w.user_id}
                      for w in root.witnesses],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(canonical(value) + b"\n")
    os.replace(temp, path)
    return path


def trust_findings(root: TrustRoot, lines: Sequence[bytes], genesis_key: str | None) -> list[tuple[int, ErrorCode, str]]:
    """What a ledger's lines break of ``root``: (seq, code, message) for each problem."""
    findings: list[tuple[int, ErrorCode, str]] = []
    if genesis_key != root.genesis_key:
        findings.append((0, ErrorCode.UNTRUSTED_ROOT,
                         f"seq 0 registers key {genesis_key}, not the genesis key {root.genesis_key} the trust root pins"))
    for pinned in root.heads:
        if pinned.size > len(lines):
            findings.append((len(lines), ErrorCode.TRUNCATED,
                             f"the trust root pins {pinned.size} entries but only {len(lines)} are complete"))
        elif sha256_hex(lines[pinned.size - 1]) != pinned.head:
            findings.append((pinned.size - 1, ErrorCode.INCONSISTENT,
                             f"entry {pinned.size - 1} does not hash to the head {pinned.head} the trust root pins"))
    return findings

