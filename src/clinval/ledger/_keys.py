"""Ledger entries about keys: registration (``key_added``) and revocation (``key_revoked``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinval.ledger._encoding import b64encode
from clinval.ledger._state import endorsement_message

if TYPE_CHECKING:
    from clinval.ledger._entry import Entry
    from clinval.ledger._store import Ledger, Signs

__all__ = ["register_key", "revoke_key"]


def key_added_body(signer: Signs, endorser: Signs | None = None) -> dict[str, Any]:
    """Return the body of the ``key_added`` entry registering ``signer``'s key."""
    public_key = b64encode(signer.public_key)
    body: dict[str, Any] = {
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "printed_name": signer.printed_name,
        "public_key": public_key,
        "user_id": signer.user_id,
    }
    if endorser is not None:
        message = endorsement_message(
            user_id=signer.user_id, key_id=signer.key_id, public_key_b64=public_key
        )
        body["endorsement"] = {"key": endorser.key_id, "sig": b64encode(endorser.sign(message))}
    return body


def register_key(ledger: Ledger, *, signer: Signs, endorser: Signs | None = None) -> Entry:
    """Append the ``key_added`` entry that registers ``signer``'s public key.

    The entry is signed by the new key itself. On an empty ledger it is the genesis
    entry and the key becomes the genesis key. A user id that already has a key needs
    ``endorser``: an active key of the same user or the genesis key.

    Raises
    ------
    LedgerError
        UNAUTHORIZED if the key is already registered or an endorsement is missing or
        not allowed.
    """
    return ledger.append(kind="key_added", body=key_added_body(signer, endorser), signer=signer)


def revoke_key(ledger: Ledger, *, key_id: str, reason: str, signer: Signs) -> Entry:
    """Append a ``key_revoked`` entry; from the next seq on, the key signs nothing valid.

    ``signer`` must be the revoked key itself or the genesis key.
    """
    return ledger.append(
        kind="key_revoked", body={"key_id": key_id, "reason": reason}, signer=signer
    )
