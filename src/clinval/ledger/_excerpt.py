"""Ledger lines checked away from their ledger.

A DVC stage may not read the growing ledger, so what it trusts travels as copies of
signed ledger lines (an approval cache file holds the alert entry, the e-signature on
it and the ``key_added`` entries of both signers). :func:`check_excerpt` applies every
rule that needs no other line: canonical form, shape, self-signed key registrations,
signatures, roles, and bindings between the lines. It cannot prove that the lines are
in the ledger, nor that a key was not revoked since; the consumers that decide
(``clinval model promote``, the PCCP report) check that against the verified ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinval.ledger._encoding import NotCanonical, parse_canonical, sha256_hex
from clinval.ledger._entry import Entry, shape_problem, signed_message
from clinval.ledger._errors import ErrorCode, LedgerError
from clinval.ledger._state import (
    RegisteredKey,
    esig_body_problem,
    key_body_problem,
    role_problem,
)

__all__ = ["Excerpt", "check_excerpt"]

MSG_SEQ_TWICE = "two different lines claim seq {seq}"
MSG_KEY_SELF = "a key_added line must be signed by the key it registers, for its user_id"
MSG_NO_KEY = "key {key} of {actor!r} is not registered by a key_added line of the excerpt"
MSG_KEY_LATER = "key {key} is registered at seq {added}, after the entry it signs"
MSG_SIGNATURE = "signature does not verify with key {key}"
MSG_NAME = "esig printed_name {found!r} differs from the key's {expected!r}"
MSG_TARGET = "esig names seq {target} with digest {found}, but that line hashes to {expected}"


@dataclass(frozen=True)
class Excerpt:
    """Lines that passed :func:`check_excerpt`.

    Attributes
    ----------
    entries : mapping of int to Entry
        The entries by seq.
    keys : mapping of str to RegisteredKey
        The keys the excerpt's ``key_added`` lines register, by key id.
    """

    entries: Mapping[int, Entry] = field(default_factory=dict)
    keys: Mapping[str, RegisteredKey] = field(default_factory=dict)

    def signer(self, entry: Entry) -> RegisteredKey:
        """The registered key that signed ``entry``."""
        return self.keys[entry.key]


def check_excerpt(lines: Iterable[bytes]) -> Excerpt:
    """Check ledger lines as far as they can be checked without the rest of the ledger.

    Parameters
    ----------
    lines : iterable of bytes
        Stored lines (without newline), in any order.

    Returns
    -------
    Excerpt

    Raises
    ------
    LedgerError
        With the code ``verify`` would report for the same fault: NOT_CANONICAL,
        MALFORMED, UNKNOWN_KEY, UNAUTHORIZED (a key's role may not sign the entry's kind,
        e.g. a machine identity's e-signature), BAD_SIGNATURE or DIGEST_MISMATCH.
    """
    entries: dict[int, Entry] = {}
    for line in lines:
        entry = _read(bytes(line))
        if entry.seq in entries and entries[entry.seq].line != entry.line:
            raise LedgerError(MSG_SEQ_TWICE.format(seq=entry.seq), code=ErrorCode.MALFORMED, seq=entry.seq)
        entries[entry.seq] = entry
    keys: dict[str, RegisteredKey] = {}
    for entry in entries.values():
        if entry.kind == "key_added":
            key = _check_key_added(entry)
            keys[key.key_id] = key
    for seq in sorted(entries):
        entry = entries[seq]
        key = keys.get(entry.key)
        if entry.kind != "key_added":
            _check_signer(entry, key)
        _check_signature(entry, keys[entry.key])
        if entry.kind == "esig":
            _check_esig(entry, keys[entry.key], entries)
    return Excerpt(entries=entries, keys=keys)


def _read(line: bytes) -> Entry:
    try:
        value = parse_canonical(line)
    except NotCanonical as exc:
        raise LedgerError(str(exc), code=ErrorCode.NOT_CANONICAL) from None
    problem = shape_problem(value)
    if problem is not None:
        raise LedgerError(problem, code=ErrorCode.MALFORMED)
    return Entry(**value, line=line)


def _check_key_added(entry: Entry) -> RegisteredKey:
    problem = key_body_problem(dict(entry.body))
    if problem is not None:
        raise LedgerError(f"key_added body {problem}", code=ErrorCode.MALFORMED, seq=entry.seq)
    if entry.key != entry.body["key_id"] or entry.actor != entry.body["user_id"]:
        raise LedgerError(MSG_KEY_SELF, code=ErrorCode.UNAUTHORIZED, seq=entry.seq)
    return RegisteredKey.from_key_added(entry.seq, dict(entry.body))


def _check_signer(entry: Entry, key: RegisteredKey | None) -> None:
    if key is None or key.user_id != entry.actor:
        message = MSG_NO_KEY.format(key=entry.key, actor=entry.actor)
        raise LedgerError(message, code=ErrorCode.UNKNOWN_KEY, seq=entry.seq)
    if key.added_seq >= entry.seq:
        message = MSG_KEY_LATER.format(key=key.key_id, added=key.added_seq)
        raise LedgerError(message, code=ErrorCode.UNKNOWN_KEY, seq=entry.seq)
    problem = role_problem(entry.kind, key)
    if problem is not None:
        raise LedgerError(problem, code=ErrorCode.UNAUTHORIZED, seq=entry.seq)


def _check_signature(entry: Entry, key: RegisteredKey) -> None:
    message, signature = signed_message(entry.line)
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise LedgerError(
            MSG_SIGNATURE.format(key=key.key_id), code=ErrorCode.BAD_SIGNATURE, seq=entry.seq
        ) from None


def _check_esig(entry: Entry, key: RegisteredKey, entries: Mapping[int, Entry]) -> None:
    body = dict(entry.body)
    problem = esig_body_problem(body)
    if problem is not None:
        raise LedgerError(f"esig body {problem}", code=ErrorCode.MALFORMED, seq=entry.seq)
    if body["printed_name"] != key.printed_name:
        message = MSG_NAME.format(found=body["printed_name"], expected=key.printed_name)
        raise LedgerError(message, code=ErrorCode.MALFORMED, seq=entry.seq)
    target = body["target"]
    named = entries.get(target.get("seq", -1))
    if named is not None and sha256_hex(named.line) != target["sha256"]:
        message = MSG_TARGET.format(
            target=target["seq"], found=target["sha256"], expected=sha256_hex(named.line)
        )
        raise LedgerError(message, code=ErrorCode.DIGEST_MISMATCH, seq=entry.seq)
