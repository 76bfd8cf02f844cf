"""The ledger file: locked, durable appends; reading; recovery of a torn tail."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Protocol

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from filelock import FileLock, Timeout

from clinval.ledger._checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from clinval.ledger._encoding import (
    NotCanonical,
    b64encode,
    check_relative_path,
    parse_canonical,
    sha256_hex,
    utc_now,
)
from clinval.ledger._entry import (
    SIGNATURE_BYTES,
    Entry,
    seal_canonical,
    shape_problem,
    signed_message,
)
from clinval.ledger._errors import ErrorCode, LedgerError
from clinval.ledger._keys import key_export
from clinval.ledger._state import ChainState, RegisteredKey

__all__ = ["Ledger", "Signs", "file_references"]

_TORN_KEEP_LIMIT = 64 * 1024
_READ_CHUNK = 1 << 22

MSG_LOCK_TIMEOUT = "another process holds the ledger lock {lock} (waited {seconds:g} s)"
MSG_SHRANK = "the ledger shrank from {before} to {after} bytes while in use"
MSG_REWRITTEN = "the ledger changed below seq {seq} while in use (rewritten history)"
MSG_TORN = (
    "the ledger ends in an incomplete line at byte {offset} ({count} bytes), left by an "
    "interrupted append; run `clinval audit recover` before appending"
)
MSG_DAMAGED = "stored line is damaged ({reason}); run `clinval audit verify`"
MSG_BODY = "body cannot be stored: {reason}"
MSG_RECOVER_COVERED = (
    "the incomplete last line is seq {seq}, but checkpoint {path} vouches for {size} "
    "entries: this is not a crash, refusing to truncate"
)
MSG_RECOVER_BAD_CHECKPOINT = "cannot check the checkpoint before truncating: {reason}"
MSG_NOT_A_SIGNER = "signer {user!r} (key {key}) is not the key it claims to be"


class Signs(Protocol):
    """What the ledger needs from a signer (see :class:`clinval.signing.Signer`)."""

    user_id: str
    printed_name: str
    key_id: str
    public_key: bytes

    def sign(self, message: bytes) -> bytes: ...


class Ledger:
    """An append-only, hash-chained, signed ledger stored as JSON lines.

    Parameters
    ----------
    path : str or os.PathLike
        The ledger file (``audit/ledger.jsonl``). Created on first append.
    checkpoint_dir : str or os.PathLike or None
        Where a signed checkpoint is written after every append (``audit/checkpoints``).
        None writes no checkpoints.
    keys_dir : str or os.PathLike or None
        Where the public key of every ``key_added`` entry is exported
        (``audit/keys``). None exports nothing; the ledger itself is authoritative.
    lock_timeout : float
        Seconds to wait for another writer's lock before giving up.

    Notes
    -----
    Every append takes an exclusive file lock (``<path>.lock``), re-reads whatever
    other processes appended, checks the new entry against the same rules
    :func:`clinval.ledger.verify` applies, writes one line, flushes and fsyncs. Nothing
    ever rewrites an entry; :meth:`recover` only truncates an incomplete last line and
    records that it did.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        checkpoint_dir: str | os.PathLike[str] | None = None,
        keys_dir: str | os.PathLike[str] | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self._path = Path(path)
        self._checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self._keys_dir = None if keys_dir is None else Path(keys_dir)
        self._lock_timeout = lock_timeout
        self._lock = FileLock(str(self._path) + ".lock", timeout=lock_timeout)
        self._reset()

    def __repr__(self) -> str:
        return f"Ledger(path={str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    @property
    def checkpoint_dir(self) -> Path | None:
        """The checkpoint directory, or None."""
        return self._checkpoint_dir

    @property
    def keys_dir(self) -> Path | None:
        """The public-key export directory, or None."""
        return self._keys_dir

    @property
    def checkpoint_path(self) -> Path | None:
        """The checkpoint the writer replaces after every append (``latest.json``), or None."""
        return None if self._checkpoint_dir is None else self._checkpoint_dir / CHECKPOINT_FILE

    # -- reading -------------------------------------------------------------------
    def entries(self) -> Iterator[Entry]:
        """Yield every complete entry in order, as stored. Nothing is verified.

        An incomplete last line (torn tail) is skipped; use :func:`verify` to check the
        ledger.

        Raises
        ------
        LedgerError
            If a complete line is not an entry at all.
        """
        if not self._path.exists():
            return
        data = self._path.read_bytes()
        end = data.rfind(b"\n") + 1
        for seq, line in enumerate(data[:end].split(b"\n")[:-1]):
            try:
                yield Entry.from_line(line)
            except ValueError as exc:
                raise LedgerError(
                    MSG_DAMAGED.format(reason=exc), code=ErrorCode.NOT_CANONICAL, seq=seq
                ) from None

    def find(self, *, kind: str | None = None, **body_match: Any) -> list[Entry]:
        """Return the entries of ``kind`` whose body has every given member value.

        Examples
        --------
        >>> ledger.find(kind="drift_alert", alert_id="a-2024-03")  # doctest: +SKIP
        """
        return [
            entry
            for entry in self.entries()
            if (kind is None or entry.kind == kind)
            and all(entry.body.get(name) == value for name, value in body_match.items())
        ]

    def registered_keys(self) -> list[RegisteredKey]:
        """Return every key the ledger registered, in order, with its revocation seq."""
        with self._locked(reading=True):
            self._refresh(strict_tail=False)
            return list(self._state.keys.values())

    def __len__(self) -> int:
        """Number of complete entries."""
        with self._locked(reading=True):
            self._refresh(strict_tail=False)
            return self._state.size

    # -- writing -------------------------------------------------------------------
    def append(self, *, kind: str, body: dict[str, Any], signer: Signs) -> Entry:
        """Sign and durably append one entry; write a checkpoint after it.

        Parameters
        ----------
        kind : str
            One of :data:`clinval.ledger.KINDS`.
        body : dict
            JSON-serialisable content (RFC 8785: no NaN, integers within 2**53). Any
            object with ``path`` and ``sha256`` members is an artifact reference that
            ``verify(deep=True)`` re-hashes.
        signer : Signer
            The actor; its key must be active (or be the key a ``key_added`` registers).

        Returns
        -------
        Entry
            The entry as stored.

        Raises
        ------
        LedgerError
            With the error code verification would report, if the entry would break a
            rule (unknown or revoked key, replayed signature, ...), or if the ledger
            ends in a torn tail.
        """
        with self._locked():
            self._refresh(strict_tail=True)
            return self._append_locked(kind=kind, body=body, signer=signer)

    def recover(self, *, signer: Signs, reason: str) -> Entry | None:
        """Truncate an incomplete last line left by a crash and record a ``recovery`` entry.

        The removed bytes are kept in the recovery entry (base64, up to 64 KiB) with
        their length and SHA-256. Refuses when the local checkpoint vouches for the
        incomplete entry, since then it was complete once and this is not a crash.

        Returns
        -------
        Entry or None
            The recovery entry, or None if the ledger has no torn tail.
        """
        with self._locked():
            self._refresh(strict_tail=False)
            size = self._path.stat().st_size if self._path.exists() else 0
            if size == self._offset:
                return None
            self._refuse_if_checkpoint_covers_tail()
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                torn = handle.read()
            body: dict[str, Any] = {
                "reason": reason,
                "torn_bytes": len(torn),
                "torn_sha256": sha256_hex(torn),
                "truncated_at": self._offset,
            }
            if len(torn) <= _TORN_KEEP_LIMIT:
                body["torn_base64"] = b64encode(torn)
            descriptor = os.open(self._path, os.O_WRONLY)
            try:
                os.ftruncate(descriptor, self._offset)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            return self._append_locked(kind="recovery", body=body, signer=signer)

    # -- internals -----------------------------------------------------------------
    def _reset(self) -> None:
        self._state = ChainState()
        self._offset = 0
        self._last_start = 0

    @contextlib.contextmanager
    def _locked(self, *, reading: bool = False) -> Iterator[None]:
        """Hold the ledger's exclusive file lock (re-entrant within this object).

        With ``reading``, a lock that cannot be created (a read-only copy handed to an
        auditor), or a ledger that does not exist, is skipped: readers ignore an
        incomplete last line anyway, and reading must leave no file behind.
        """
        if reading and not self._path.exists():
            yield
            return
        try:
            if not reading:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            raise LedgerError(
                MSG_LOCK_TIMEOUT.format(lock=self._lock.lock_file, seconds=self._lock_timeout)
            ) from None
        except OSError:
            if not reading:
                raise
            yield
            return
        try:
            yield
        finally:
            self._lock.release()

    def _refresh(self, *, strict_tail: bool) -> None:
        """Read lines other writers appended since the last call (lock held)."""
        try:
            size = self._path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._offset:
            raise LedgerError(
                MSG_SHRANK.format(before=self._offset, after=size),
                code=ErrorCode.TRUNCATED,
                seq=self._state.size,
            )
        if size == 0:
            return
        with open(self._path, "rb") as handle:
            if self._offset:
                handle.seek(self._last_start)
                last = handle.read(self._offset - self._last_start - 1)
                if sha256_hex(last) != self._state.head:
                    raise LedgerError(
                        MSG_REWRITTEN.format(seq=self._state.size),
                        code=ErrorCode.INCONSISTENT,
                        seq=self._state.size - 1,
                    )
            handle.seek(self._offset)
            pending = b""
            while chunk := handle.read(_READ_CHUNK):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    self._admit_stored(line)
        if pending and strict_tail:
            raise LedgerError(
                MSG_TORN.format(offset=self._offset, count=len(pending)),
                code=ErrorCode.TORN_TAIL,
                seq=self._state.size,
            )

    def _admit_stored(self, line: bytes) -> None:
        seq = self._state.size
        try:
            value = parse_canonical(line)
        except NotCanonical as exc:
            raise LedgerError(
                MSG_DAMAGED.format(reason=exc), code=ErrorCode.NOT_CANONICAL, seq=seq
            ) from None
        problem = shape_problem(value)
        if problem is not None:
            raise LedgerError(MSG_DAMAGED.format(reason=problem), code=ErrorCode.MALFORMED, seq=seq)
        rejection = self._state.check(value)
        if rejection is not None:
            raise LedgerError(
                MSG_DAMAGED.format(reason=rejection.message), code=rejection.code, seq=seq
            )
        self._state.apply(value, sha256_hex(line))
        self._last_start = self._offset
        self._offset += len(line) + 1

    def _append_locked(self, *, kind: str, body: dict[str, Any], signer: Signs) -> Entry:
        seq = self._state.size
        unsigned = {
            "actor": signer.user_id,
            "body": body,
            "key": signer.key_id,
            "kind": kind,
            "prev": self._state.head,
            "seq": seq,
            "time": utc_now(),
        }
        problem = shape_problem({**unsigned, "sig": b64encode(bytes(SIGNATURE_BYTES))})
        if problem is None:
            problem = _references_problem(body)
        if problem is not None:
            raise LedgerError(MSG_BODY.format(reason=problem), code=ErrorCode.MALFORMED, seq=seq)
        try:
            unsigned_bytes = rfc8785.dumps(unsigned)
        except RecursionError:
            raise LedgerError(
                MSG_BODY.format(reason="nested too deeply"), code=ErrorCode.NOT_CANONICAL, seq=seq
            ) from None
        except (rfc8785.CanonicalizationError, UnicodeEncodeError, TypeError) as exc:
            raise LedgerError(
                MSG_BODY.format(reason=exc), code=ErrorCode.MALFORMED, seq=seq
            ) from None
        # The rules judge exactly the value that will be stored, not the caller's objects.
        rejection = self._state.check({**json.loads(unsigned_bytes), "sig": ""})
        if rejection is not None:
            raise LedgerError(rejection.message, code=rejection.code, seq=seq)
        line = seal_canonical(unsigned_bytes, signer.sign)
        try:
            # The verifier's own parser: the writer stores nothing the verifier refuses.
            value = parse_canonical(line)
        except NotCanonical as exc:
            raise LedgerError(
                MSG_BODY.format(reason=exc), code=ErrorCode.NOT_CANONICAL, seq=seq
            ) from None
        self._check_own_signature(value, line, signer)
        self._write_line(line)
        digest = sha256_hex(line)
        self._state.apply(value, digest)
        self._last_start = self._offset
        self._offset += len(line) + 1
        if self._checkpoint_dir is not None:
            write_checkpoint(self._checkpoint_dir, size=self._state.size, head=digest, signer=signer)
        if kind == "key_added" and self._keys_dir is not None:
            self._export_public_key(self._state.keys[value["body"]["key_id"]])
        return Entry(**value, line=line)

    def _check_own_signature(self, value: dict[str, Any], line: bytes, signer: Signs) -> None:
        """Refuse a signer whose private key does not match the key id it claims."""
        message, signature = signed_message(line)
        try:
            Ed25519PublicKey.from_public_bytes(self._state.signing_key(value)).verify(
                signature, message
            )
        except (InvalidSignature, ValueError):
            raise LedgerError(
                MSG_NOT_A_SIGNER.format(user=signer.user_id, key=signer.key_id),
                code=ErrorCode.BAD_SIGNATURE,
                seq=value["seq"],
            ) from None

    def _write_line(self, line: bytes) -> None:
        """Append ``line`` and a newline, then fsync; undo a partial write on error."""
        created = not self._path.exists()
        data = memoryview(line + b"\n")
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        written = 0
        try:
            while written < len(data):
                written += os.write(descriptor, data[written:])
            os.fsync(descriptor)
        except BaseException:
            if written:
                os.ftruncate(descriptor, self._offset)
            raise
        finally:
            os.close(descriptor)
        if created:
            _fsync_directory(self._path.parent)

    def _refuse_if_checkpoint_covers_tail(self) -> None:
        if self._checkpoint_dir is None:
            return
        path = self._checkpoint_dir / CHECKPOINT_FILE
        if not path.exists():
            return
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError as exc:
            raise LedgerError(
                MSG_RECOVER_BAD_CHECKPOINT.format(reason=exc), code=ErrorCode.BAD_CHECKPOINT
            ) from None
        if checkpoint.size > self._state.size:
            raise LedgerError(
                MSG_RECOVER_COVERED.format(
                    seq=self._state.size, path=path, size=checkpoint.size
                ),
                code=ErrorCode.TRUNCATED,
                seq=self._state.size,
            )

    def _export_public_key(self, key: RegisteredKey) -> None:
        assert self._keys_dir is not None
        self._keys_dir.mkdir(parents=True, exist_ok=True)
        target = self._keys_dir / f"{key.key_id}.json"
        temp = target.with_suffix(".json.tmp")
        temp.write_text(key_export(key), encoding="utf-8")
        os.replace(temp, target)


def _fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (POSIX; no-op elsewhere)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def file_references(body: Any) -> Iterator[dict[str, Any]]:
    """Yield every artifact reference in a body: an object with ``path`` and ``sha256``.

    A reference whose ``sha256`` is None records that the file was absent; it vouches
    for nothing and deep verification skips it.
    """
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item and "sha256" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _references_problem(body: Any) -> str | None:
    for reference in file_references(body):
        problem = check_relative_path(reference["path"])
        if problem is not None:
            return problem
        digest = reference["sha256"]
        if digest is not None and not (
            isinstance(digest, str) and len(digest) == 64 and digest == digest.lower()
        ):
            return f"sha256 of {reference['path']!r} must be 64 lowercase hex digits or null"
    return None
