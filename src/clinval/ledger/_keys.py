"""Ledger entries about keys: registration (``key_added``) and revocation (``key_revoked``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinval.ledger._encoding import b64encode
from clinval.ledger._state import RegisteredKey, endorsement_message

if TYPE_CHECKING:
    from clinval.ledger._entry import Entry
    from clinval.ledger._store import Ledger, Signs

__all__ = ["key_added_body", "key_export", "register_key", "revoke_key"]


def key_added_body(
    signer: Signs, endorser: Signs | None = None, *, role: str = "person"
) -> dict[str, Any]:
    """Return the body of the ``key_added`` entry registering ``signer``'s key."""
    public_key = b64encode(signer.public_key)
    body: dict[str, Any] = {
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "printed_name": signer.printed_name,
        "public_key": public_key,
        "role": role,
        "user_id": signer.user_id,
    }
    if endorser is not None:
        message = endorsement_message(
            user_id=signer.user_id, key_id=signer.key_id, public_key_b64=public_key
        )
        body["endorsement"] = {"key": endorser.key_id, "sig": b64encode(endorser.sign(message))}
    return body


def register_key(
    ledger: Ledger, *, signer: Signs, endorser: Signs | None = None, role: str = "person"
) -> Entry:
    """Append the ``key_added`` entry that registers ``signer``'s public key.

    The entry is signed by the new key itself. On an empty ledger it is the genesis
    entry and the key becomes the genesis key. A user id that already has a key needs
    ``endorser``: an active key of the same user or the genesis key.

    Parameters
    ----------
    role : str
        ``person`` (signs decisions and promotions) or ``machine`` (records what runs
        produced; see :data:`clinval.ledger.ROLES`).

    Raises
    ------
    LedgerError
        UNAUTHORIZED if the key is already registered, an endorsement is missing or not
        allowed, the printed name belongs to another user id, or the role differs from
        the user's first key.
    """
    body = key_added_body(signer, endorser, role=role)
    return ledger.append(kind="key_added", body=body, signer=signer)


def key_export(key: RegisteredKey) -> str:
    """Return the ``audit/keys/<key_id>.json`` text for a registered key.

    The export is a convenience (a PEM for tools outside clinval); ``verify`` checks each
    exported file against the ledger, which stays the authority.
    """
    pem = (
        Ed25519PublicKey.from_public_bytes(key.public_key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    record = {
        "added_seq": key.added_seq,
        "key_id": key.key_id,
        "printed_name": key.printed_name,
        "public_key": b64encode(key.public_key),
        "public_key_pem": pem,
        "role": key.role,
        "user_id": key.user_id,
    }
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def revoke_key(ledger: Ledger, *, key_id: str, reason: str, signer: Signs) -> Entry:
    """Append a ``key_revoked`` entry; from the next seq on, the key signs nothing valid.

    ``signer`` must be the revoked key itself or the genesis key.
    """
    return ledger.append(
        kind="key_revoked", body={"key_id": key_id, "reason": reason}, signer=signer
    )
