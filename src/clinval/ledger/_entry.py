"""One ledger entry: its fields, kinds, signed bytes and shape checks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from clinval.ledger._encoding import (
    HEX64,
    MAX_LINE_BYTES,
    b64decode_exact,
    b64encode,
    canonical,
    is_utc_time,
    sha256_hex,
)

__all__ = ["DECIDABLE_KINDS", "DECISIONS", "ENTRY_FIELDS", "Entry", "GENESIS_PREV", "KINDS", "MACHINE_KINDS",
           "MAX_LINE_BYTES", "MEANINGS", "PERSON_KINDS", "ROLES"]

KINDS: frozenset[str] = frozenset(
    {
        "pipeline_run",
        "drift_alert",
        "fairness_alert",
        "data_pull",
        "esig",
        "retrain",
        "model_version",
        "key_added",
        "key_revoked",
        "recovery",
        "prediction_batch",
        "access_failure",
    }
)
"""Every entry kind the ledger accepts; anything else is MALFORMED."""

MEANINGS: tuple[str, ...] = ("authored", "reviewed", "approved", "rejected")
"""The meanings an electronic signature can carry (21 CFR 11.50(a)(3))."""

DECISIONS: tuple[str, ...] = ("approved", "rejected")
"""The meanings that decide an alert; the first one on an alert entry is final."""

ROLES: tuple[str, ...] = ("person", "machine")
"""Who a key signs for: a person, or a machine identity such as the pipeline."""

PERSON_KINDS: frozenset[str] = frozenset({"esig", "model_version"})
"""Entries only a person's key may sign: electronic signatures and promotions."""

MACHINE_KINDS: frozenset[str] = frozenset(
    {"pipeline_run", "drift_alert", "fairness_alert", "data_pull", "retrain", "prediction_batch"}
)
"""Entries only a machine identity may sign: what pipeline runs produced."""

DECIDABLE_KINDS: frozenset[str] = frozenset({"drift_alert", "fairness_alert"})
"""Entries a person decides on (approved or rejected) once and for all."""

ENTRY_FIELDS: frozenset[str] = frozenset(
    {"seq", "prev", "time", "kind", "actor", "key", "body", "sig"}
)
"""The exact top-level members of a stored entry."""

GENESIS_PREV = "0" * 64
"""The ``prev`` of the first entry: there is no stored line before it."""

ENTRY_DOMAIN = b"clinval-ledger-entry-v1\n"
"""Prefix of every signed entry message, so an entry signature means nothing elsewhere."""

SIGNATURE_BYTES = 64

ACTOR_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{32}")

_SIG_MEMBER = b',"sig":"'
_TIME_MEMBER = b',"time":"'

MSG_NOT_OBJECT = "an entry must be a JSON object"
MSG_FIELDS = "entry members must be exactly {expected}; found {found}"
MSG_FIELD_TYPE = "entry member {name!r} {problem}"


@dataclass(frozen=True)
class Entry:
    """An entry as stored: its fields and the exact line (without newline) it came from.

    Attributes
    ----------
    seq : int
        Position in the ledger, from 0 (the genesis entry).
    prev : str
        Hex SHA-256 of the previous stored line; 64 zeros for seq 0.
    time : str
        UTC time of the append, ISO-8601 with microseconds and ``Z``.
    kind : str
        One of :data:`KINDS`.
    actor : str
        User id of the signer.
    key : str
        Id of the Ed25519 key that signed the entry (see ``key_fingerprint``).
    body : Mapping
        What the entry records; its shape depends on ``kind``.
    sig : str
        Base64 Ed25519 signature over the canonical entry without ``sig``.
    line : bytes
        The stored bytes the entry was read from; ``digest`` hashes exactly these.
    """

    seq: int
    prev: str
    time: str
    kind: str
    actor: str
    key: str
    body: Mapping[str, Any] = field(hash=False)
    sig: str
    line: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the stored line: what the next entry's ``prev`` names."""
        return sha256_hex(self.line)

    @classmethod
    def from_line(cls, line: bytes) -> Entry:
        """Build an entry from a stored line without verifying anything.

        Raises
        ------
        ValueError
            If ``line`` is not JSON or not shaped like an entry.
        """
        try:
            value = json.loads(line)
        except RecursionError:
            raise ValueError("nesting too deep to read") from None
        problem = shape_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return cls(**value, line=bytes(line))


def shape_problem(value: Any) -> str | None:
    """Return what is wrong with the top-level shape of a parsed entry, or None."""
    if not isinstance(value, dict):
        return MSG_NOT_OBJECT
    if value.keys() != ENTRY_FIELDS:
        return MSG_FIELDS.format(
            expected=sorted(ENTRY_FIELDS), found=sorted(value.keys())
        )
    seq = value["seq"]
    if type(seq) is not int or seq < 0:
        return MSG_FIELD_TYPE.format(name="seq", problem="must be an integer >= 0")
    if not isinstance(value["prev"], str) or not HEX64.fullmatch(value["prev"]):
        return MSG_FIELD_TYPE.format(name="prev", problem="must be 64 lowercase hex digits")
    if not isinstance(value["time"], str) or not is_utc_time(value["time"]):
        return MSG_FIELD_TYPE.format(
            name="time", problem="must be UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ'"
        )
    if value["kind"] not in KINDS:
        return MSG_FIELD_TYPE.format(name="kind", problem=f"{value['kind']!r} is not a kind")
    if not isinstance(value["actor"], str) or not ACTOR_PATTERN.fullmatch(value["actor"]):
        return MSG_FIELD_TYPE.format(name="actor", problem="is not a valid user id")
    if not isinstance(value["key"], str) or not KEY_ID_PATTERN.fullmatch(value["key"]):
        return MSG_FIELD_TYPE.format(name="key", problem="must be 32 lowercase hex digits")
    if not isinstance(value["body"], dict):
        return MSG_FIELD_TYPE.format(name="body", problem="must be an object")
    if b64decode_exact(value["sig"], SIGNATURE_BYTES) is None:
        return MSG_FIELD_TYPE.format(
            name="sig", problem="must be canonical base64 of a 64-byte signature"
        )
    return None


def signed_message(line: bytes) -> tuple[bytes, bytes]:
    """Split a stored canonical line into (signed message, raw signature).

    The message is the domain prefix plus the stored bytes with the ``"sig"`` member
    cut out. In canonical JSON ``sig`` sorts between ``seq`` and ``time``, whose
    values cannot contain ``,"sig":"``, so the last occurrence is the member itself:
    the signature is checked against stored bytes, never against a re-serialisation.
    Only call this on a line that passed :func:`shape_problem`.
    """
    start = line.rindex(_SIG_MEMBER)
    value_start = start + len(_SIG_MEMBER)
    end = line.index(b'"', value_start)
    signature = b64decode_exact(line[value_start:end].decode("ascii"), SIGNATURE_BYTES)
    if signature is None:  # unreachable after shape_problem; keep the contract local
        raise ValueError("sig member is not canonical base64")
    return ENTRY_DOMAIN + line[:start] + line[end + 1 :], signature


def seal(unsigned: Mapping[str, Any], sign: Callable[[bytes], bytes]) -> bytes:
    """Sign an entry (all members but ``sig``) and return its stored line.

    Parameters
    ----------
    unsigned : Mapping
        The entry without ``sig``.
    sign : callable
        Returns the Ed25519 signature of a message.
    """
    return seal_canonical(canonical(dict(unsigned)), sign)


def seal_canonical(unsigned: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """Sign the canonical bytes of an entry without ``sig`` and return its stored line.

    ``sig`` sorts just before ``time``, the last member, so the stored line is the
    unsigned bytes with ``,"sig":"..."`` inserted before ``,"time":"`` -- the exact
    inverse of the cut :func:`signed_message` makes.
    """
    message = ENTRY_DOMAIN + unsigned
    at = unsigned.rindex(_TIME_MEMBER)
    member = _SIG_MEMBER + b64encode(sign(message)).encode("ascii") + b'"'
    line = unsigned[:at] + member + unsigned[at:]
    if signed_message(line)[0] != message:
        raise AssertionError("sig member cut does not reproduce the signed bytes")
    return line
