"""Signing keys and electronic signatures (21 CFR 11.50, 11.70, 11.200).

Each person (and the pipeline) has an Ed25519 key. The private key never enters the
repository: it lives in the user's key store, ``$CLINVAL_HOME/keys/`` or, when
``CLINVAL_HOME`` is unset, ``platformdirs.user_config_dir("clinval")/keys/``, encrypted
with a key derived from a passphrase (scrypt, then AES-256-GCM). The public key is
registered in the ledger by a ``key_added`` entry and exported to ``audit/keys/``.

Signing takes two components, the user id and the passphrase (11.200(a)(1)), plus
possession of the key file. An electronic signature is an ``esig`` ledger entry whose
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
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from clinval.ledger import MEANINGS, path_sha256
from clinval.ledger._encoding import (
    b64decode_exact,
    b64encode,
    canonical,
    check_relative_path,
    key_fingerprint,
    utc_now,
)
from clinval.ledger._entry import ACTOR_PATTERN

if TYPE_CHECKING:
    from clinval.ledger import Entry, Ledger

__all__ = [
    "ENV_HOME",
    "ENV_PASSPHRASE",
    "ENV_USER",
    "MEANINGS",
    "MIN_PASSPHRASE_LENGTH",
    "PIPELINE_ACTOR",
    "PIPELINE_NAME",
    "Signer",
    "SigningError",
    "create_key",
    "digest_of_target",
    "esign",
    "has_private_key",
    "key_store_dir",
    "load_signer",
    "private_key_path",
]

PIPELINE_ACTOR = "pipeline"
"""The user id of the pipeline's own machine identity (``clinval audit record``). It
records what runs produced; it may never sign a review decision or a promotion."""
PIPELINE_NAME = "clinval pipeline"
ENV_HOME = "CLINVAL_HOME"
ENV_PASSPHRASE = "CLINVAL_PASSPHRASE"
ENV_USER = "CLINVAL_USER"
MIN_PASSPHRASE_LENGTH = 8

KEY_FILE_FORMAT = "clinval-private-key-v1"
KEY_FILE_SUFFIX = ".key.json"
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
MSG_WRONG_PASSPHRASE = "wrong passphrase for {user_id!r} (or the key file {path} was altered)"
MSG_BAD_KEY_FILE = "{path} is not a clinval private key file: {reason}"
MSG_BAD_MEANING = "meaning must be one of {choices}, not {meaning!r}"
MSG_BAD_REASON = "a signature needs a non-empty reason"
MSG_BAD_TARGET = "target {target!r} is neither a seq number nor a path inside the root: {problem}"
MSG_NO_SEQ = "the ledger has no entry with seq {seq}"
MSG_NO_FILE = "target {path} does not exist under {root}"
MSG_NEEDS_ROOT = "target {target!r} is a path: pass root, the directory it is relative to"


class SigningError(Exception):
    """A key could not be created or unlocked, or a signature request is invalid."""


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
    if not isinstance(user_id, str) or not ACTOR_PATTERN.fullmatch(user_id):
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
    if not ACTOR_PATTERN.fullmatch(user_id):
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

    Raises
    ------
    SigningError
        If there is no key for ``user_id``, the passphrase is wrong, or the file is
        damaged or was edited.
    """
    path = private_key_path(user_id, home=home)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SigningError(MSG_NO_KEY.format(user_id=user_id, path=path.parent)) from None
    except (OSError, ValueError) as exc:
        raise SigningError(MSG_BAD_KEY_FILE.format(path=path, reason=exc)) from None
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
        raise SigningError(MSG_WRONG_PASSPHRASE.format(user_id=user_id, path=path)) from None
    signer = _signer_from(Ed25519PrivateKey.from_private_bytes(raw), user_id, record["printed_name"])
    if signer.key_id != record["key_id"]:
        raise SigningError(MSG_BAD_KEY_FILE.format(path=path, reason="key id does not match"))
    return signer


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

