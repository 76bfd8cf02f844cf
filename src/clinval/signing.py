"""Signing keys and electronic signatures (21 CFR 11.50, 11.70, 11.200).

Each person (and the pipeline) has an Ed25519 key. The private key never enters the
repository: it lives in the user's key store, ``$CLINVAL_HOME/keys/`` or, when
``CLINVAL_HOME`` is unset, ``platformdirs.user_config_dir("clinval")/keys/``, encrypted
with a key derived from a passphrase (scrypt, then AES-256-GCM). The public key is
registered in the ledger by a ``key_added`` entry and exported to ``audit/keys/``.

Signing takes two components, the user id and the passphrase (11.200(a)(1)), plus
possession of the key file. Wrong passphrases are counted per user id in the key store
(11.300(d)): after :data:`MAX_FAILURES` within :data:`FAILURE_WINDOW` the user id is
locked until a stated time (:data:`LOCKOUT`) or until the ledger administrator (the
genesis key) unlocks it, and every failed or refused attempt is appended to the ledger
as an ``access_failure`` entry (:func:`record_access_failures`), at the user's next
successful sign-in or at the unlock, whichever comes first. An electronic signature is an ``esig`` ledger entry whose
body names the *digest* of what is signed, so it cannot be moved to another record
(11.70), and records the signer's printed name, the UTC time and the meaning
(11.50): authored, reviewed, approved or rejected. The same (signer, target digest,
meaning) cannot be signed twice.

Environment
-----------
``CLINVAL_HOME``        replaces the user config directory (tests point it at a tmp dir)
``CLINVAL_PASSPHRASE``  passphrase for non-interactive use (CI, the pipeline signer)
``CLINVAL_USER``        user id for non-interactive signing

Public API
----------
``create_key(*, user_id, printed_name, passphrase, home=None) -> Signer``
``load_signer(user_id, *, passphrase, home=None) -> Signer``
``Signer.ephemeral(*, user_id, printed_name) -> Signer`` (in memory; tests, benchmarks)
``has_private_key(user_id, *, home=None) -> bool``, ``private_key_path(...)``,
``key_store_dir(home=None)``
``esign(ledger, *, signer, target_ref, target_digest, meaning, reason) -> Entry``
``digest_of_target(ledger, target_ref, *, root=None) -> str``
``access_state(user_id, *, home=None) -> AccessState``,
``record_access_failures(ledger, *, signer, user_id=None, reason=..., home=None) -> Entry | None``
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from clinval.errors import ClinvalError
from clinval.ledger import (
    MEANINGS,
    USER_ID_PATTERN,
    b64decode_exact,
    b64encode,
    canonical,
    check_relative_path,
    key_fingerprint,
    path_sha256,
    utc_now,
)

if TYPE_CHECKING:
    from clinval.ledger import Entry, Ledger

__all__ = [
    "ENV_HOME",
    "ENV_PASSPHRASE",
    "ENV_USER",
    "FAILURE_WINDOW",
    "LOCKED_OUT",
    "LOCKOUT",
    "MAX_FAILURES",
    "MEANINGS",
    "MIN_PASSPHRASE_LENGTH",
    "PIPELINE_ACTOR",
    "PIPELINE_NAME",
    "AccessState",
    "Signer",
    "SigningError",
    "access_state",
    "create_key",
    "digest_of_target",
    "esign",
    "has_private_key",
    "key_store_dir",
    "load_signer",
    "private_key_path",
    "record_access_failures",
]

PIPELINE_ACTOR = "pipeline"
"""The default user id of the pipeline's machine identity (``clinval audit record``),
registered with the role ``machine``: the ledger lets it record what runs produced and
never sign a review decision or a promotion (:data:`clinval.ledger.PERSON_KINDS`)."""
PIPELINE_NAME = "clinval pipeline"
ENV_HOME = "CLINVAL_HOME"
ENV_PASSPHRASE = "CLINVAL_PASSPHRASE"
ENV_USER = "CLINVAL_USER"
MIN_PASSPHRASE_LENGTH = 8

MAX_FAILURES = 5
"""Wrong passphrases within :data:`FAILURE_WINDOW` that lock a user id."""
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
"""How long a user id stays locked, unless the ledger administrator unlocks it first."""
LOCKED_OUT = "LOCKED_OUT"
"""The code of a :class:`SigningError` refusing a locked user id."""

KEY_FILE_FORMAT = "clinval-private-key-v1"
KEY_FILE_SUFFIX = ".key.json"
ATTEMPTS_SUFFIX = ".attempts.json"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# scrypt cost: ~32 MiB and ~0.15 s per unlock; stored in the file so it can grow later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SALT_BYTES, _NONCE_BYTES = 16, 12
_TARGET_SEQ = re.compile(r"(?:seq:)?(\d+)")

MSG_BAD_USER_ID = (
    "user id {user_id!r} is not valid: use 1-64 letters, digits, '.', '_', '@' or '-', "
    "starting with a letter or digit"
)
MSG_BAD_PRINTED_NAME = "the printed name must be non-empty text of at most 200 characters"
MSG_SHORT_PASSPHRASE = "the passphrase must have at least {minimum} characters"
MSG_KEY_EXISTS = (
    "a private key for {user_id!r} already exists at {path}; keep using it, or revoke it "
    "and move the file away before creating another"
)
MSG_NO_KEY = (
    "no private key for {user_id!r} on this machine (looked in {path}); create one with "
    "`clinval keys init --id {user_id} --name \"Printed Name\"`"
)
MSG_WRONG_PASSPHRASE = (
    "wrong passphrase for {user_id!r} (or the key file {path} was altered); "
    "{count} of {limit} failures allowed within {minutes} minutes"
)
MSG_LOCKED = (
    "user id {user_id!r} is locked until {until} (UTC) after {limit} wrong passphrases; this "
    "attempt was refused and is recorded. Wait, or ask the ledger administrator to run "
    "`clinval keys unlock {user_id} --reason ...`"
)
MSG_BAD_KEY_FILE = "{path} is not a clinval private key file: {reason}"
MSG_BAD_MEANING = "meaning must be one of {choices}, not {meaning!r}"
MSG_BAD_REASON = "a signature needs a non-empty reason"
MSG_BAD_TARGET = "target {target!r} is neither a seq number nor a path inside the root: {problem}"
MSG_NO_SEQ = "the ledger has no entry with seq {seq}"
MSG_NO_FILE = "target {path} does not exist under {root}"
MSG_NEEDS_ROOT = "target {target!r} is a path: pass root, the directory it is relative to"


class SigningError(ClinvalError):
    """A key could not be created or unlocked, or a signature request is invalid.

    ``code`` is :data:`LOCKED_OUT` when the user id is locked, else None.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.code is None else f"{self.code}: {text}"


@dataclass(frozen=True)
class Signer:
    """An unlocked signing key and the identity it signs for.

    Attributes
    ----------
    user_id : str
        The signer's unique user id (the ledger's ``actor``).
    printed_name : str
        The name shown with each signature (11.50(a)(1)).
    key_id : str
        32 hex digits identifying the public key.
    public_key : bytes
        The raw 32-byte Ed25519 public key.
    """

    user_id: str
    printed_name: str
    key_id: str
    public_key: bytes = field(repr=False)
    _private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._private_key.sign(message)

    @classmethod
    def ephemeral(cls, *, user_id: str, printed_name: str) -> Signer:
        """Return a fresh in-memory signer that is never stored (tests, benchmarks)."""
        _check_identity(user_id, printed_name)
        return _signer_from(Ed25519PrivateKey.generate(), user_id, printed_name)


def _signer_from(private_key: Ed25519PrivateKey, user_id: str, printed_name: str) -> Signer:
    public_key = private_key.public_key().public_bytes_raw()
    return Signer(
        user_id=user_id,
        printed_name=printed_name,
        key_id=key_fingerprint(public_key),
        public_key=public_key,
        _private_key=private_key,
    )


def _check_identity(user_id: str, printed_name: str) -> None:
    if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
        raise SigningError(MSG_BAD_USER_ID.format(user_id=user_id))
    if not isinstance(printed_name, str) or not printed_name.strip() or len(printed_name) > 200:
        raise SigningError(MSG_BAD_PRINTED_NAME)


# -- key store ---------------------------------------------------------------------
def key_store_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the private-key directory: ``home``, else ``$CLINVAL_HOME``, else the
    user config directory, each followed by ``keys/``."""
    if home is None:
        home = os.environ.get(ENV_HOME) or platformdirs.user_config_dir("clinval")
    return Path(home) / "keys"


def private_key_path(user_id: str, *, home: str | os.PathLike[str] | None = None) -> Path:
    """Return where the private key of ``user_id`` is (or would be) stored."""
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise SigningError(MSG_BAD_USER_ID.format(user_id=user_id))
    return key_store_dir(home) / f"{user_id}{KEY_FILE_SUFFIX}"


def has_private_key(user_id: str, *, home: str | os.PathLike[str] | None = None) -> bool:
    """Return whether this machine's key store holds a key for ``user_id``."""
    return private_key_path(user_id, home=home).exists()


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _associated_data(record: dict[str, Any]) -> bytes:
    # Authenticate every member but the ciphertext: identity and KDF cannot be swapped.
    return canonical({name: value for name, value in record.items() if name != "ciphertext"})


def create_key(
    *,
    user_id: str,
    printed_name: str,
    passphrase: str,
    home: str | os.PathLike[str] | None = None,
) -> Signer:
    """Generate an Ed25519 key, store it encrypted under ``passphrase``, return it.

    The file is created with mode 0600 in a 0700 directory and never overwritten.
    Register the key in a ledger with :func:`clinval.ledger.register_key`.

    Raises
    ------
    SigningError
        If the user id or printed name is invalid, the passphrase is shorter than
        :data:`MIN_PASSPHRASE_LENGTH`, or a key for ``user_id`` already exists.
    """
    _check_identity(user_id, printed_name)
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise SigningError(MSG_SHORT_PASSPHRASE.format(minimum=MIN_PASSPHRASE_LENGTH))
    path = private_key_path(user_id, home=home)
    if path.exists():
        raise SigningError(MSG_KEY_EXISTS.format(user_id=user_id, path=path))
    private_key = Ed25519PrivateKey.generate()
    signer = _signer_from(private_key, user_id, printed_name)
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    record: dict[str, Any] = {
        "cipher": {"name": "aes-256-gcm", "nonce": b64encode(nonce)},
        "created": utc_now(),
        "format": KEY_FILE_FORMAT,
        "kdf": {"n": SCRYPT_N, "name": "scrypt", "p": SCRYPT_P, "r": SCRYPT_R, "salt": b64encode(salt)},
        "key_id": signer.key_id,
        "printed_name": printed_name,
        "public_key": b64encode(signer.public_key),
        "user_id": user_id,
    }
    secret = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(secret).encrypt(
        nonce, private_key.private_bytes_raw(), _associated_data(record)
    )
    record["ciphertext"] = b64encode(ciphertext)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningError(MSG_KEY_EXISTS.format(user_id=user_id, path=path)) from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return signer


def load_signer(
    user_id: str, *, passphrase: str, home: str | os.PathLike[str] | None = None
) -> Signer:
    """Unlock the stored key of ``user_id`` with ``passphrase``.

    A wrong passphrase is counted; the :data:`MAX_FAILURES`-th within
    :data:`FAILURE_WINDOW` locks the user id for :data:`LOCKOUT`. While locked, every
    attempt is refused without trying the passphrase, and counted too.

    Raises
    ------
    SigningError
        If there is no key for ``user_id``, the passphrase is wrong, the file is
        damaged or was edited, or the user id is locked (``code`` LOCKED_OUT).
    """
    path = private_key_path(user_id, home=home)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SigningError(MSG_NO_KEY.format(user_id=user_id, path=path.parent)) from None
    except (OSError, ValueError) as exc:
        raise SigningError(MSG_BAD_KEY_FILE.format(path=path, reason=exc)) from None
    access = access_state(user_id, home=home)
    now = _now()
    if access.locked_at(now):
        access.add(now, "refused while locked").save()
        raise SigningError(
            MSG_LOCKED.format(user_id=user_id, until=access.locked_until, limit=MAX_FAILURES), code=LOCKED_OUT
        )
    try:
        kdf, cipher = record["kdf"], record["cipher"]
        if record["format"] != KEY_FILE_FORMAT or kdf["name"] != "scrypt":
            raise ValueError("unknown format or KDF")
        if cipher["name"] != "aes-256-gcm" or record["user_id"] != user_id:
            raise ValueError("unknown cipher or another user's key")
        salt = b64decode_exact(kdf["salt"])
        nonce = b64decode_exact(cipher["nonce"], _NONCE_BYTES)
        ciphertext = b64decode_exact(record["ciphertext"])
        if salt is None or nonce is None or ciphertext is None:
            raise ValueError("salt, nonce or ciphertext is not base64")
        secret = _derive(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SigningError(MSG_BAD_KEY_FILE.format(path=path, reason=exc)) from None
    try:
        raw = AESGCM(secret).decrypt(nonce, ciphertext, _associated_data(record))
    except InvalidTag:
        access = access.add(now, "wrong passphrase")
        failures = access.failures_since(now - FAILURE_WINDOW)
        if failures >= MAX_FAILURES:
            access = access.lock_until(now + LOCKOUT)
        access.save()
        if access.locked_at(now):
            raise SigningError(
                MSG_LOCKED.format(user_id=user_id, until=access.locked_until, limit=MAX_FAILURES),
                code=LOCKED_OUT,
            ) from None
        raise SigningError(MSG_WRONG_PASSPHRASE.format(
            user_id=user_id, path=path, count=failures, limit=MAX_FAILURES,
            minutes=int(FAILURE_WINDOW.total_seconds() // 60))) from None
    signer = _signer_from(Ed25519PrivateKey.from_private_bytes(raw), user_id, record["printed_name"])
    if signer.key_id != record["key_id"]:
        raise SigningError(MSG_BAD_KEY_FILE.format(path=path, reason="key id does not match"))
    return signer


# -- attempted use (21 CFR 11.300(d)) ------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def _format(moment: datetime) -> str:
    return moment.strftime(_TIME_FORMAT)


def _parse(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class AccessState:
    """Failed and refused sign-in attempts of one user id not yet in the ledger.

    Kept in ``<key store>/<user>.attempts.json`` (mode 0600) next to the key.

    Attributes
    ----------
    user_id : str
    path : Path
        Where the state is kept.
    attempts : tuple of (str, str)
        UTC time and outcome (``wrong passphrase``, ``refused while locked``) of each.
    locked_until : str or None
        UTC time the lock ends, if the user id is or was locked.
    """

    user_id: str
    path: Path
    attempts: tuple[tuple[str, str], ...] = ()
    locked_until: str | None = None

    def locked_at(self, moment: datetime) -> bool:
        """Whether the user id is locked at ``moment``."""
        return self.locked_until is not None and moment < _parse(self.locked_until)

    def failures_since(self, moment: datetime) -> int:
        """Wrong passphrases at or after ``moment``."""
        return sum(outcome == "wrong passphrase" and _parse(time) >= moment for time, outcome in self.attempts)

    def add(self, moment: datetime, outcome: str) -> AccessState:
        return AccessState(self.user_id, self.path, (*self.attempts, (_format(moment), outcome)), self.locked_until)

    def lock_until(self, moment: datetime) -> AccessState:
        return AccessState(self.user_id, self.path, self.attempts, _format(moment))

    def save(self) -> None:
        """Write the state atomically (mode 0600)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"attempts": [{"outcome": o, "time": t} for t, o in self.attempts],
                "locked_until": self.locked_until, "user_id": self.user_id}
        temp = self.path.with_name(f".{self.path.name}.tmp")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(temp, self.path)

    def clear(self) -> None:
        """Forget the attempts and the lock (after they are in the ledger)."""
        self.path.unlink(missing_ok=True)


def access_state(user_id: str, *, home: str | os.PathLike[str] | None = None) -> AccessState:
    """Return the attempts of ``user_id`` not yet recorded, and its lock, from the key store."""
    path = private_key_path(user_id, home=home).with_name(f"{user_id}{ATTEMPTS_SUFFIX}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        attempts = tuple((a["time"], a["outcome"]) for a in raw["attempts"])
        return AccessState(user_id, path, attempts, raw.get("locked_until"))
    except FileNotFoundError:
        return AccessState(user_id, path)
    except (OSError, ValueError, KeyError, TypeError):
        # An unreadable state file must not unlock anyone: treat it as a lock for the window.
        return AccessState(user_id, path, (), _format(_now() + LOCKOUT))


def record_access_failures(
    ledger: Ledger,
    *,
    signer: Signer,
    user_id: str | None = None,
    reason: str = "recorded at the next successful sign-in",
    home: str | os.PathLike[str] | None = None,
) -> Entry | None:
    """Append the pending attempts of ``user_id`` (default: the signer's) as an
    ``access_failure`` entry signed by ``signer``, then clear them and any lock.

    The signer is the user itself (after a successful sign-in) or the genesis key (the
    administrator unlocking another user id). Returns None when nothing is pending or
    the signer's key is not registered in this ledger yet (then nothing is cleared).
    """
    user_id = user_id or signer.user_id
    access = access_state(user_id, home=home)
    if not access.attempts and access.locked_until is None:
        return None
    if signer.key_id not in {key.key_id for key in ledger.registered_keys()}:
        return None
    body = {
        "attempts": [{"outcome": o, "time": t} for t, o in access.attempts],
        "locked_until": access.locked_until,
        "reason": reason,
        "user_id": user_id,
    }
    entry = ledger.append(kind="access_failure", body=body, signer=signer)
    access.clear()
    return entry


# -- electronic signatures ---------------------------------------------------------
def _target_member(target_ref: str) -> dict[str, Any]:
    match = _TARGET_SEQ.fullmatch(target_ref)
    if match:
        return {"seq": int(match.group(1))}
    problem = check_relative_path(target_ref)
    if problem is not None:
        raise SigningError(MSG_BAD_TARGET.format(target=target_ref, problem=problem))
    return {"path": target_ref}


def digest_of_target(
    ledger: Ledger, target_ref: str, *, root: str | os.PathLike[str] | None = None
) -> str:
    """Return the SHA-256 a signature on ``target_ref`` must name.

    Parameters
    ----------
    ledger : Ledger
        The ledger, for entry targets.
    target_ref : str
        ``"12"`` or ``"seq:12"`` for ledger entry 12 (the digest of its stored line), or
        a relative path under ``root`` (a file's SHA-256; a directory's tree digest).
    root : str or os.PathLike or None
        The repository root paths are relative to; required for a path target.
    """
    member = _target_member(target_ref)
    if "seq" in member:
        for entry in ledger.entries():
            if entry.seq == member["seq"]:
                return entry.digest
        raise SigningError(MSG_NO_SEQ.format(seq=member["seq"]))
    if root is None:
        raise SigningError(MSG_NEEDS_ROOT.format(target=target_ref))
    full = Path(root) / member["path"]
    if not full.exists():
        raise SigningError(MSG_NO_FILE.format(path=member["path"], root=root))
    return path_sha256(full)


def esign(
    ledger: Ledger,
    *,
    signer: Signer,
    target_ref: str,
    target_digest: str,
    meaning: str,
    reason: str,
) -> Entry:
    """Append an electronic signature bound to the digest of its target.

    Parameters
    ----------
    ledger : Ledger
        Where the signature is recorded.
    signer : Signer
        The unlocked key of the person signing.
    target_ref : str
        What is signed: a seq (``"12"`` / ``"seq:12"``) or a relative path.
    target_digest : str
        Its SHA-256 (see :func:`digest_of_target`); an entry target is checked here.
    meaning : str
        One of ``authored``, ``reviewed``, ``approved``, ``rejected``.
    reason : str
        Why, in the signer's words.

    Returns
    -------
    Entry
        The ``esig`` entry; its ``time`` is the signing time.

    Raises
    ------
    LedgerError
        DUPLICATE_SIGNATURE when the signer already signed this digest with this
        meaning; DIGEST_MISMATCH when an entry target's digest is wrong; UNKNOWN_KEY
        or KEY_REVOKED when the key may not sign.
    SigningError
        When the meaning, reason or target is invalid.
    """
    if meaning not in MEANINGS:
        raise SigningError(MSG_BAD_MEANING.format(choices=", ".join(MEANINGS), meaning=meaning))
    if not isinstance(reason, str) or not reason.strip():
        raise SigningError(MSG_BAD_REASON)
    body = {
        "meaning": meaning,
        "printed_name": signer.printed_name,
        "reason": reason,
        "target": {**_target_member(target_ref), "sha256": target_digest},
    }
    return ledger.append(kind="esig", body=body, signer=signer)

