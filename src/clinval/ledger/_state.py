"""The rules an entry must satisfy given the entries before it.

One state machine serves both sides: :func:`clinval.ledger.verify` replays it over the
stored lines, and :class:`clinval.ledger.Ledger` runs it before every append, so the
writer refuses exactly what the verifier would reject.

Key rules
---------
* seq 0 (genesis) is a ``key_added`` entry; its key is the *genesis key*.
* Every ``key_added`` entry is signed by the key it registers (proof of possession) and
  carries its public key; ``actor`` is the body's ``user_id``.
* The first key of a user id is accepted on its own signature. A further key for a user
  id that already has one must carry an *endorsement*: a signature by an active key of
  the same user, or by the genesis key, over the registration. So nobody can add a key
  for an existing user without that user's key or the genesis key. An endorsement, when
  present, must always verify.
* ``key_revoked`` is signed by the revoked key itself or by the genesis key.
* Any other entry is signed by an active key registered to its ``actor``: registered at
  an earlier seq and not revoked at an earlier seq.
* An ``esig`` names the digest of its target; a target that is an entry is checked here,
  a file target by ``verify(deep=True)``. One (actor, target digest, meaning) only once.

Role rules
----------
* A key signs for a ``person`` or a ``machine`` (the pipeline); every key of a user id has
  the role of its first key, and a printed name belongs to one user id only. A machine
  identity is created by the ledger administrator: its first key is the genesis key or
  carries the genesis key's endorsement (a person cannot mint a machine to record runs).
* Only a person signs ``esig`` and ``model_version`` entries; only a machine signs what
  runs produced (``pipeline_run``, alerts, ``data_pull``, ``retrain``).
* The first ``approved`` or ``rejected`` signature on an alert entry decides it; a second
  decision on the same alert, by anyone, is DUPLICATE_DECISION.
* An ``access_failure`` entry is signed by the user it concerns or by the genesis key.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinval.ledger._encoding import (
    HEX64,
    b64decode_exact,
    canonical,
    check_relative_path,
    key_fingerprint,
    sha256_hex,
)
from clinval.ledger._entry import (
    ACTOR_PATTERN,
    DECIDABLE_KINDS,
    DECISIONS,
    GENESIS_PREV,
    KEY_ID_PATTERN,
    MACHINE_KINDS,
    MEANINGS,
    PERSON_KINDS,
    ROLES,
    SIGNATURE_BYTES,
)
from clinval.ledger._errors import ErrorCode

__all__ = [
    "ChainState",
    "RegisteredKey",
    "Rejection",
    "endorsement_message",
    "esig_body_problem",
    "key_body_problem",
    "name_key",
    "role_problem",
]

ENDORSE_DOMAIN = b"clinval-key-endorsement-v1\n"
MAX_PRINTED_NAME = 200

MSG_SEQ = "expected seq {expected}, found {found}"
MSG_PREV = "prev {found} is not the SHA-256 of the previous line ({expected})"
MSG_GENESIS_KIND = "the first entry must be a key_added entry registering its signer"
MSG_KEY_BODY = "key_added body {problem}"
MSG_NOT_SELF_SIGNED = "a key_added entry must be signed by the key it registers"
MSG_ACTOR_NOT_OWNER = "actor {actor!r} differs from the registered user_id {user!r}"
MSG_KEY_EXISTS = "key {key} is already registered (seq {seq})"
MSG_NEEDS_ENDORSEMENT = (
    "user {user!r} already has a key; a further key needs an endorsement by an active "
    "key of that user or by the genesis key"
)
MSG_BAD_ENDORSER = "endorsing key {key} is not an active key of {user!r} nor the genesis key"
MSG_BAD_ENDORSEMENT = "the endorsement signature does not verify"
MSG_UNKNOWN_KEY = "key {key} is not registered"
MSG_KEY_OTHER_ACTOR = "key {key} is registered to {owner!r}, not to actor {actor!r}"
MSG_KEY_REVOKED = "key {key} of {owner!r} was revoked at seq {revoked}"
MSG_REVOKE_BODY = "key_revoked body must be {{key_id: 32 hex digits, reason: text}}"
MSG_ALREADY_REVOKED = "key {key} was already revoked at seq {revoked}"
MSG_REVOKER = "key {key} may only be revoked by itself or by the genesis key"
MSG_ESIG_BODY = "esig body {problem}"
MSG_PRINTED_NAME = "esig printed_name {found!r} differs from the key's {expected!r}"
MSG_TARGET_SEQ = "esig targets seq {target}, which is not an earlier entry"
MSG_TARGET_DIGEST = "esig target digest {found} is not the digest of seq {target} ({expected})"
MSG_DUPLICATE = "{actor!r} already signed {digest} as {meaning!r} at seq {first}"
MSG_ROLE_PERSON = (
    "key {key} of {user!r} is a machine identity; a {kind} entry is signed by a person "
    "(a review decision or a promotion needs a person's user id and passphrase)"
)
MSG_ROLE_MACHINE = "key {key} of {user!r} is a person's; a {kind} entry is recorded by a machine identity"
MSG_ROLE_CHANGED = "user {user!r} signs as a {role}; a further key cannot make it a {other}"
MSG_NAME_TAKEN = (
    "printed name {name!r} is already registered to user {owner!r} (seq {seq}); two user ids "
    "with one printed name would pass for two people"
)
MSG_DECIDED = (
    "alert entry seq {target} was already {decision} at seq {first}; a decision is final"
)
MSG_MACHINE_ENDORSEMENT = (
    "machine identity {user!r} must be the genesis key or be endorsed by it; "
    "register it with `clinval keys init --id {user} --role machine --endorse-by <administrator>`"
)
MSG_ACCESS_BODY = "access_failure body {problem}"
MSG_ACCESS_SIGNER = "an access_failure of {user!r} is signed by that user or by the genesis key"


@dataclass(frozen=True)
class Rejection:
    """Why an entry breaks the rules: a stable code and a message for a person."""

    code: ErrorCode
    message: str


@dataclass(frozen=True)
class RegisteredKey:
    """A public key as the ledger registered it, with its life span in seqs.

    Attributes
    ----------
    key_id : str
        32 hex digits: the start of SHA-256 over the raw public key.
    user_id, printed_name : str
        Whom the key signs for, as registered.
    public_key : bytes
        The raw 32-byte Ed25519 public key.
    added_seq : int
        Seq of the ``key_added`` entry.
    revoked_seq : int or None
        Seq of the ``key_revoked`` entry, if any.
    endorsed_by : str or None
        Key id that endorsed the registration (None for a user's first key).
    role : str
        ``person`` or ``machine`` (see :data:`clinval.ledger.ROLES`); registrations that
        state no role are a person's.
    """

    key_id: str
    user_id: str
    printed_name: str
    public_key: bytes = field(repr=False)
    added_seq: int
    revoked_seq: int | None = None
    endorsed_by: str | None = None
    role: str = "person"

    @classmethod
    def from_key_added(cls, seq: int, body: dict[str, Any]) -> RegisteredKey:
        """The key a well-formed ``key_added`` body at ``seq`` registers."""
        endorsement = body.get("endorsement")
        return cls(
            key_id=body["key_id"],
            user_id=body["user_id"],
            printed_name=body["printed_name"],
            public_key=b64decode_exact(body["public_key"], 32) or b"",
            added_seq=seq,
            endorsed_by=None if endorsement is None else endorsement["key"],
            role=body.get("role", "person"),
        )

    def active_at(self, seq: int) -> bool:
        """Return whether an entry at ``seq`` may be signed with this key."""
        return self.added_seq <= seq and (self.revoked_seq is None or seq <= self.revoked_seq)


def endorsement_message(*, user_id: str, key_id: str, public_key_b64: str) -> bytes:
    """Return the bytes an endorsing key signs to vouch for a new key of ``user_id``."""
    statement = {"key_id": key_id, "public_key": public_key_b64, "user_id": user_id}
    return ENDORSE_DOMAIN + canonical(statement)


def role_problem(kind: str, key: RegisteredKey) -> str | None:
    """Return why ``key`` may not sign an entry of ``kind`` (its role), or None.

    The one definition of "the machine identity cannot sign": used by the ledger's rules,
    by :func:`clinval.ledger.check_excerpt` and so by every consumer of either.
    """
    if kind in PERSON_KINDS and key.role != "person":
        return MSG_ROLE_PERSON.format(key=key.key_id, user=key.user_id, kind=kind)
    if kind in MACHINE_KINDS and key.role != "machine":
        return MSG_ROLE_MACHINE.format(key=key.key_id, user=key.user_id, kind=kind)
    return None


def name_key(printed_name: str) -> str:
    """How two printed names are compared: NFKC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", printed_name).casefold().split())


def _text(value: Any, limit: int = 10_000) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) and len(value) <= limit


class ChainState:
    """Everything the rules need to know about the entries seen so far.

    Call :meth:`check` on a parsed entry, then :meth:`apply` with its stored digest.
    """

    def __init__(self) -> None:
        self.size = 0
        self.head = GENESIS_PREV
        self.digests: list[str] = []
        self.keys: dict[str, RegisteredKey] = {}
        self.keys_of_user: dict[str, list[str]] = {}
        self.genesis_key: str | None = None
        self.signatures: dict[tuple[str, str, str], int] = {}
        self.names: dict[str, str] = {}
        self.decidable: set[int] = set()
        self.decided: dict[int, tuple[int, str]] = {}
        self._public_keys: dict[str, Ed25519PublicKey] = {}
        # Indexes for `record_run`: what has already been recorded.
        self.last_run_lock: str | None = None
        self.alert_ids: set[str] = set()
        self.pull_alert_ids: set[str] = set()
        self.retrain_facts: set[str] = set()

    # -- keys ----------------------------------------------------------------------
    def public_key(self, key_id: str) -> Ed25519PublicKey:
        """Return the loaded public key object for a registered key id."""
        loaded = self._public_keys.get(key_id)
        if loaded is None:
            loaded = Ed25519PublicKey.from_public_bytes(self.keys[key_id].public_key)
            self._public_keys[key_id] = loaded
        return loaded

    def signing_key(self, entry: dict[str, Any]) -> bytes:
        """Return the raw public key that must verify ``entry`` (after :meth:`check`)."""
        if entry["kind"] == "key_added":
            return b64decode_exact(entry["body"]["public_key"], 32) or b""
        return self.keys[entry["key"]].public_key

    def active_keys_of(self, user_id: str, seq: int) -> list[RegisteredKey]:
        """Return the keys of ``user_id`` that may sign an entry at ``seq``."""
        return [
            self.keys[k] for k in self.keys_of_user.get(user_id, []) if self.keys[k].active_at(seq)
        ]

    # -- rules ---------------------------------------------------------------------
    def check(self, entry: dict[str, Any]) -> Rejection | None:
        """Return why a well-shaped entry may not come next, or None if it may."""
        seq = entry["seq"]
        if seq != self.size:
            return Rejection(ErrorCode.SEQ_GAP, MSG_SEQ.format(expected=self.size, found=seq))
        if entry["prev"] != self.head:
            return Rejection(
                ErrorCode.PREV_MISMATCH, MSG_PREV.format(found=entry["prev"], expected=self.head)
            )
        kind = entry["kind"]
        if kind == "key_added":
            return self._check_key_added(entry)
        if seq == 0:
            return Rejection(ErrorCode.MALFORMED, MSG_GENESIS_KIND)
        rejection = self._check_signer(entry)
        if rejection is not None:
            return rejection
        if kind == "key_revoked":
            return self._check_key_revoked(entry)
        if kind == "esig":
            return self._check_esig(entry)
        if kind == "access_failure":
            return self._check_access_failure(entry)
        return None

    def _check_signer(self, entry: dict[str, Any]) -> Rejection | None:
        key_id = entry["key"]
        registered = self.keys.get(key_id)
        if registered is None:
            return Rejection(ErrorCode.UNKNOWN_KEY, MSG_UNKNOWN_KEY.format(key=key_id))
        if registered.user_id != entry["actor"]:
            return Rejection(
                ErrorCode.UNKNOWN_KEY,
                MSG_KEY_OTHER_ACTOR.format(
                    key=key_id, owner=registered.user_id, actor=entry["actor"]
                ),
            )
        if not registered.active_at(entry["seq"]):
            return Rejection(
                ErrorCode.KEY_REVOKED,
                MSG_KEY_REVOKED.format(
                    key=key_id, owner=registered.user_id, revoked=registered.revoked_seq
                ),
            )
        problem = role_problem(entry["kind"], registered)
        if problem is not None:
            return Rejection(ErrorCode.UNAUTHORIZED, problem)
        return None

    def _check_key_added(self, entry: dict[str, Any]) -> Rejection | None:
        body = entry["body"]
        problem = key_body_problem(body)
        if problem is not None:
            return Rejection(ErrorCode.MALFORMED, MSG_KEY_BODY.format(problem=problem))
        if entry["key"] != body["key_id"]:
            return Rejection(ErrorCode.UNAUTHORIZED, MSG_NOT_SELF_SIGNED)
        if entry["actor"] != body["user_id"]:
            return Rejection(
                ErrorCode.UNAUTHORIZED,
                MSG_ACTOR_NOT_OWNER.format(actor=entry["actor"], user=body["user_id"]),
            )
        existing = self.keys.get(body["key_id"])
        if existing is not None:
            return Rejection(
                ErrorCode.UNAUTHORIZED,
                MSG_KEY_EXISTS.format(key=body["key_id"], seq=existing.added_seq),
            )
        user = body["user_id"]
        rejection = self._check_identity(body)
        if rejection is not None:
            return rejection
        endorsement = body.get("endorsement")
        first_machine_key = body.get("role") == "machine" and entry["seq"] != 0 and not self.keys_of_user.get(user)
        if first_machine_key and (endorsement is None or endorsement["key"] != self.genesis_key):
            return Rejection(ErrorCode.UNAUTHORIZED, MSG_MACHINE_ENDORSEMENT.format(user=user))
        if endorsement is None:
            if self.keys_of_user.get(user):
                return Rejection(ErrorCode.UNAUTHORIZED, MSG_NEEDS_ENDORSEMENT.format(user=user))
            return None
        endorser = self.keys.get(endorsement["key"])
        if endorser is None or not endorser.active_at(entry["seq"]) or (
            endorser.user_id != user and endorser.key_id != self.genesis_key
        ):
            return Rejection(
                ErrorCode.UNAUTHORIZED,
                MSG_BAD_ENDORSER.format(key=endorsement["key"], user=user),
            )
        message = endorsement_message(
            user_id=user, key_id=body["key_id"], public_key_b64=body["public_key"]
        )
        signature = b64decode_exact(endorsement["sig"], SIGNATURE_BYTES) or b""
        try:
            self.public_key(endorser.key_id).verify(signature, message)
        except InvalidSignature:
            return Rejection(ErrorCode.UNAUTHORIZED, MSG_BAD_ENDORSEMENT)
        return None

    def _check_identity(self, body: dict[str, Any]) -> Rejection | None:
        """A user keeps its role, and a printed name stays with one user id."""
        user, role = body["user_id"], body.get("role", "person")
        first = self.keys_of_user.get(user)
        if first and self.keys[first[0]].role != role:
            other = self.keys[first[0]].role
            return Rejection(
                ErrorCode.UNAUTHORIZED, MSG_ROLE_CHANGED.format(user=user, role=other, other=role)
            )
        owner = self.names.get(name_key(body["printed_name"]))
        if owner is not None and owner != user:
            seq = self.keys[self.keys_of_user[owner][0]].added_seq
            return Rejection(
                ErrorCode.UNAUTHORIZED,
                MSG_NAME_TAKEN.format(name=body["printed_name"], owner=owner, seq=seq),
            )
        return None

    def _check_access_failure(self, entry: dict[str, Any]) -> Rejection | None:
        body = entry["body"]
        user = body.get("user_id")
        if not isinstance(user, str) or not isinstance(body.get("attempts"), list):
            problem = "must name a user_id and list its attempts"
            return Rejection(ErrorCode.MALFORMED, MSG_ACCESS_BODY.format(problem=problem))
        if entry["actor"] != user and entry["key"] != self.genesis_key:
            return Rejection(ErrorCode.UNAUTHORIZED, MSG_ACCESS_SIGNER.format(user=user))
        return None

    def _check_key_revoked(self, entry: dict[str, Any]) -> Rejection | None:
        body = entry["body"]
        if (
            set(body) != {"key_id", "reason"}
            or not isinstance(body["key_id"], str)
            or not KEY_ID_PATTERN.fullmatch(body["key_id"])
            or not _text(body["reason"])
        ):
            return Rejection(ErrorCode.MALFORMED, MSG_REVOKE_BODY)
        target = self.keys.get(body["key_id"])
        if target is None:
            return Rejection(ErrorCode.UNKNOWN_KEY, MSG_UNKNOWN_KEY.format(key=body["key_id"]))
        if target.revoked_seq is not None:
            return Rejection(
                ErrorCode.KEY_REVOKED,
                MSG_ALREADY_REVOKED.format(key=target.key_id, revoked=target.revoked_seq),
            )
        if entry["key"] not in (target.key_id, self.genesis_key):
            return Rejection(ErrorCode.UNAUTHORIZED, MSG_REVOKER.format(key=target.key_id))
        return None

    def _check_esig(self, entry: dict[str, Any]) -> Rejection | None:
        body = entry["body"]
        problem = esig_body_problem(body)
        if problem is not None:
            return Rejection(ErrorCode.MALFORMED, MSG_ESIG_BODY.format(problem=problem))
        registered = self.keys[entry["key"]]
        if body["printed_name"] != registered.printed_name:
            return Rejection(
                ErrorCode.MALFORMED,
                MSG_PRINTED_NAME.format(
                    found=body["printed_name"], expected=registered.printed_name
                ),
            )
        target = body["target"]
        if "seq" in target:
            target_seq = target["seq"]
            if target_seq >= entry["seq"]:
                return Rejection(ErrorCode.DIGEST_MISMATCH, MSG_TARGET_SEQ.format(target=target_seq))
            if self.digests[target_seq] != target["sha256"]:
                return Rejection(
                    ErrorCode.DIGEST_MISMATCH,
                    MSG_TARGET_DIGEST.format(
                        found=target["sha256"],
                        target=target_seq,
                        expected=self.digests[target_seq],
                    ),
                )
        triple = (entry["actor"], target["sha256"], body["meaning"])
        first = self.signatures.get(triple)
        if first is not None:
            return Rejection(
                ErrorCode.DUPLICATE_SIGNATURE,
                MSG_DUPLICATE.format(
                    actor=triple[0], digest=triple[1], meaning=triple[2], first=first
                ),
            )
        decided = self.decided.get(target.get("seq", -1))
        if body["meaning"] in DECISIONS and decided is not None:
            return Rejection(
                ErrorCode.DUPLICATE_DECISION,
                MSG_DECIDED.format(target=target["seq"], decision=decided[1], first=decided[0]),
            )
        return None

    # -- state update --------------------------------------------------------------
    def apply(self, entry: dict[str, Any], digest: str) -> None:
        """Record an entry that passed :meth:`check` and whose stored line hashes to ``digest``."""
        seq, kind, body = entry["seq"], entry["kind"], entry["body"]
        if kind == "key_added":
            registered = RegisteredKey.from_key_added(seq, body)
            self.keys[registered.key_id] = registered
            self.keys_of_user.setdefault(registered.user_id, []).append(registered.key_id)
            self.names.setdefault(name_key(registered.printed_name), registered.user_id)
            if seq == 0:
                self.genesis_key = registered.key_id
        elif kind == "key_revoked":
            old = self.keys[body["key_id"]]
            self.keys[old.key_id] = dataclasses.replace(old, revoked_seq=seq)
        elif kind == "esig":
            triple = (entry["actor"], body["target"]["sha256"], body["meaning"])
            self.signatures[triple] = seq
            target = body["target"].get("seq")
            if body["meaning"] in DECISIONS and target in self.decidable:
                self.decided.setdefault(target, (seq, body["meaning"]))
        elif kind in DECIDABLE_KINDS:
            self.decidable.add(seq)
            self._index_record(kind, body)
        else:
            self._index_record(kind, body)
        self.digests.append(digest)
        self.head = digest
        self.size += 1

    def _index_record(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "pipeline_run":
            lock = body.get("dvc_lock")
            if isinstance(lock, dict) and isinstance(lock.get("sha256"), str):
                self.last_run_lock = lock["sha256"]
        elif kind in ("drift_alert", "fairness_alert") and isinstance(body.get("alert_id"), str):
            self.alert_ids.add(body["alert_id"])
        elif kind == "data_pull" and isinstance(body.get("alert_id"), str):
            self.pull_alert_ids.add(body["alert_id"])
        elif kind == "retrain":
            self.retrain_facts.add(retrain_fingerprint(body))


def retrain_fingerprint(body: dict[str, Any]) -> str:
    """What makes two ``retrain`` entries the same record: everything but where it was read."""
    facts = {name: value for name, value in body.items() if name not in ("report", "source")}
    return sha256_hex(canonical(facts))


def key_body_problem(body: dict[str, Any]) -> str | None:
    """Return what is wrong with a ``key_added`` body on its own, or None."""
    required = {"algorithm", "key_id", "printed_name", "public_key", "user_id"}
    optional = {"endorsement", "role"}
    if not required <= set(body) or not set(body) <= required | optional:
        return f"must have members {sorted(required)} and optionally {sorted(optional)}"
    if body["algorithm"] != "ed25519":
        return "algorithm must be 'ed25519'"
    if body.get("role", "person") not in ROLES:
        return f"role must be one of {', '.join(ROLES)}"
    if not isinstance(body["user_id"], str) or not ACTOR_PATTERN.fullmatch(body["user_id"]):
        return "user_id is not a valid user id"
    if not _text(body["printed_name"], MAX_PRINTED_NAME):
        return f"printed_name must be non-empty text of at most {MAX_PRINTED_NAME} characters"
    public_key = b64decode_exact(body["public_key"], 32)
    if public_key is None:
        return "public_key must be canonical base64 of 32 bytes"
    if body["key_id"] != key_fingerprint(public_key):
        return "key_id is not the fingerprint of public_key"
    if "endorsement" in body:
        endorsement = body["endorsement"]
        if (
            not isinstance(endorsement, dict)
            or set(endorsement) != {"key", "sig"}
            or not isinstance(endorsement["key"], str)
            or not KEY_ID_PATTERN.fullmatch(endorsement["key"])
            or b64decode_exact(endorsement["sig"], SIGNATURE_BYTES) is None
        ):
            return "endorsement must be {key: key id, sig: base64 signature}"
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        return "public_key is not an Ed25519 key"
    return None


def esig_body_problem(body: dict[str, Any]) -> str | None:
    """Return what is wrong with an ``esig`` body on its own, or None."""
    if set(body) != {"meaning", "printed_name", "reason", "target"}:
        return "must have exactly members meaning, printed_name, reason, target"
    if body["meaning"] not in MEANINGS:
        return f"meaning must be one of {', '.join(MEANINGS)}"
    if not _text(body["reason"]):
        return "reason must be non-empty text"
    if not _text(body["printed_name"], MAX_PRINTED_NAME):
        return "printed_name must be non-empty text"
    target = body["target"]
    if not isinstance(target, dict) or not isinstance(target.get("sha256"), str):
        return "target must be an object with a sha256"
    if not HEX64.fullmatch(target["sha256"]):
        return "target sha256 must be 64 lowercase hex digits"
    if set(target) == {"seq", "sha256"}:
        if type(target["seq"]) is not int or target["seq"] < 0:
            return "target seq must be an integer >= 0"
        return None
    if set(target) == {"path", "sha256"}:
        return check_relative_path(target["path"])
    return "target must be {seq, sha256} or {path, sha256}"
