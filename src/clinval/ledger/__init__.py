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
signs itself, as a person's or a machine identity's; a user's further keys need an
endorsement by that user's active key or the genesis key; a key is revoked by itself or
the genesis key; an entry counts only if its key was active at its seq. Only a person
signs e-signatures and promotions, only a machine records what runs produced, a printed
name belongs to one user id, and the first decision on an alert is final.

After each append a signed checkpoint ``{size, head}`` replaces
``audit/checkpoints/latest.json``; a kept copy later proves the ledger only grew
(TRUNCATED / INCONSISTENT otherwise). A reviewer's *trust root* (genesis key and
witnessed heads, kept off-system) also proves it was not rebuilt (UNTRUSTED_ROOT).

Public API
----------
``Ledger(*, path, checkpoint_dir=None, keys_dir=None, lock_timeout=60.0)``
    ``.append(*, kind, body, signer) -> Entry``, ``.entries()``,
    ``.find(*, kind=None, **body_match) -> list[Entry]``, ``.registered_keys()``,
    ``.recover(*, signer, reason) -> Entry | None``, ``.checkpoint_path``, ``len(ledger)``.
``verify(ledger_path, *, deep=False, checkpoint=None, root=None, workers=None, trust=None,
keys_dir=None)`` ``-> VerifyResult`` with ``.ok``, ``.code``, ``.seq``, ``.message``,
    ``.size``, ``.head``, ``.genesis_key``, ``.trusted(seq)``.
``check_excerpt(lines) -> Excerpt``: the rules that hold for lines away from their ledger.
``record_run(ledger, *, signer, root, dvc_lock="dvc.lock", reports_dir="reports")``
    ``-> RecordResult``: append what a pipeline run produced, once per distinct run.
``register_key(ledger, *, signer, endorser=None, role="person")``,
``revoke_key(ledger, *, key_id, reason, signer)``
``read_checkpoint(path) -> Checkpoint``, ``read_trust_root(path) -> TrustRoot``,
``write_trust_root(path, root)``, ``cosign(*, genesis_key, size, head, signer)``
``ErrorCode``, ``ERROR_CODES`` (code -> one-line meaning), ``LedgerError``,
``Entry``, ``RegisteredKey``, ``KINDS``, ``MEANINGS``, ``DECISIONS``, ``ROLES``,
``PERSON_KINDS``, ``MACHINE_KINDS``, ``DECIDABLE_KINDS``.
Encoding helpers shared with the key store: ``canonical``, ``sha256_hex``, ``path_sha256``,
``b64encode``, ``b64decode_exact``, ``key_fingerprint``, ``utc_now``,
``check_relative_path``, ``USER_ID_PATTERN``.

Keys and e-signatures (``create_key``, ``load_signer``, ``esign``, ``digest_of_target``)
live in :mod:`clinval.signing`; the trail's human-readable views (``summarize``, the
sign-off page) in :mod:`clinval.signoff`. See ``docs/ledger.md`` for the file formats.
"""

from clinval.ledger._checkpoint import CHECKPOINT_FILE, Checkpoint, CheckpointError, read_checkpoint
from clinval.ledger._encoding import (
    TIME_FORMAT,
    b64decode_exact,
    b64encode,
    canonical,
    check_relative_path,
    key_fingerprint,
    path_sha256,
    sha256_hex,
    utc_now,
)
from clinval.ledger._entry import ACTOR_PATTERN as USER_ID_PATTERN
from clinval.ledger._entry import (
    DECIDABLE_KINDS,
    DECISIONS,
    KINDS,
    MACHINE_KINDS,
    MEANINGS,
    PERSON_KINDS,
    ROLES,
    Entry,
)
from clinval.ledger._errors import ERROR_CODES, ErrorCode, LedgerError
from clinval.ledger._excerpt import Excerpt, check_excerpt
from clinval.ledger._keys import register_key, revoke_key
from clinval.ledger._record import RecordResult, record_run
from clinval.ledger._state import RegisteredKey
from clinval.ledger._store import Ledger, Signs
from clinval.ledger._trust import (
    Cosignature,
    PinnedHead,
    TrustRoot,
    Witness,
    cosign,
    read_trust_root,
    write_trust_root,
)
from clinval.ledger._verify import VerifyResult, verify

__all__ = [
    "CHECKPOINT_FILE",
    "DECIDABLE_KINDS",
    "DECISIONS",
    "ERROR_CODES",
    "KINDS",
    "MACHINE_KINDS",
    "MEANINGS",
    "PERSON_KINDS",
    "ROLES",
    "TIME_FORMAT",
    "USER_ID_PATTERN",
    "Checkpoint",
    "CheckpointError",
    "Cosignature",
    "Entry",
    "ErrorCode",
    "Excerpt",
    "Ledger",
    "LedgerError",
    "PinnedHead",
    "RecordResult",
    "RegisteredKey",
    "Signs",
    "TrustRoot",
    "VerifyResult",
    "Witness",
    "b64decode_exact",
    "b64encode",
    "canonical",
    "check_excerpt",
    "check_relative_path",
    "cosign",
    "key_fingerprint",
    "path_sha256",
    "read_checkpoint",
    "read_trust_root",
    "record_run",
    "register_key",
    "revoke_key",
    "sha256_hex",
    "utc_now",
    "verify",
    "write_trust_root",
]
