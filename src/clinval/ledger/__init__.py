"""The audit ledger: an append-only, hash-chained, signed record of what happened.

21 CFR Part 11 asks that electronic records carry a secure, computer-generated,
time-stamped audit trail that cannot obscure earlier entries. ``audit/ledger.jsonl``
is that trail: one line per entry, each line the RFC 8785 canonical JSON of ::

    {seq, prev, time, kind, actor, key, body, sig}

``seq`` counts from 0; ``prev`` is the SHA-256 of the previous *stored line* (64 zeros
for seq 0), so changing, removing or reordering any line breaks every later link;
``time`` is UTC (``2025-01-31T12:00:00.000000Z``); ``kind`` is one of :data:`KINDS`;
``actor`` is a user id and ``key`` the id of the Ed25519 key that signed the entry;
``sig`` signs ``b"clinval-ledger-entry-v1\\n"`` plus the canonical entry without
``sig``. Verification hashes and checks signatures over the stored bytes, and rejects
any line that is not exactly its own canonical serialisation (NOT_CANONICAL).

Who may sign is decided by the ledger itself (see ``clinval.ledger._state``): the first
entry registers the genesis key; every key is registered by a ``key_added`` entry it
signs itself; a user's further keys need an endorsement by that user's active key or
the genesis key; a key is revoked by itself or the genesis key; an entry counts only if
its key was active at its seq.

After each append a signed checkpoint ``{size, head}`` replaces
``audit/checkpoints/latest.json``; a kept copy later proves the ledger only grew
(TRUNCATED / INCONSISTENT otherwise).

Public API
----------
``Ledger(*, path, checkpoint_dir=None, keys_dir=None, lock_timeout=60.0)``
    ``.append(*, kind, body, signer) -> Entry``, ``.entries()``,
    ``.find(*, kind=None, **body_match) -> list[Entry]``, ``.registered_keys()``,
    ``.recover(*, signer, reason) -> Entry | None``, ``len(ledger)``.
``verify(ledger_path, *, deep=False, checkpoint=None, root=None, workers=None)``
    ``-> VerifyResult`` with ``.ok``, ``.code``, ``.seq``, ``.message``.
``record_run(ledger, *, signer, root, dvc_lock="dvc.lock", reports_dir="reports")``
    ``-> RecordResult``: append what a pipeline run produced, once per distinct run.
``register_key(ledger, *, signer, endorser=None)``, ``revoke_key(ledger, *, key_id, reason, signer)``
``read_checkpoint(path) -> Checkpoint``, ``path_sha256(path) -> str``
``summarize(entry) -> str``, ``signoff_html(entries, *, keys, verification) -> str``
``ErrorCode``, ``ERROR_CODES`` (code -> one-line meaning), ``LedgerError``,
``Entry``, ``RegisteredKey``, ``KINDS``, ``MEANINGS``.

Keys and e-signatures (``create_key``, ``load_signer``, ``esign``, ``digest_of_target``)
live in :mod:`clinval.signing`. See ``docs/ledger.md`` for the file formats.
"""

from clinval.ledger._checkpoint import Checkpoint, CheckpointError, read_checkpoint
from clinval.ledger._encoding import path_sha256
from clinval.ledger._entry import KINDS, MEANINGS, Entry
from clinval.ledger._errors import ERROR_CODES, ErrorCode, LedgerError
from clinval.ledger._keys import register_key, revoke_key
from clinval.ledger._record import RecordResult, record_run
from clinval.ledger._signoff import signoff_html, summarize
from clinval.ledger._state import RegisteredKey
from clinval.ledger._store import Ledger
from clinval.ledger._verify import VerifyResult, verify

__all__ = [
    "ERROR_CODES",
    "KINDS",
    "MEANINGS",
    "Checkpoint",
    "CheckpointError",
    "Entry",
    "ErrorCode",
    "Ledger",
    "LedgerError",
    "RecordResult",
    "RegisteredKey",
    "path_sha256",
    "read_checkpoint",
    "record_run",
    "register_key",
    "revoke_key",
    "signoff_html",
    "summarize",
    "verify",
    "VerifyResult",
]
