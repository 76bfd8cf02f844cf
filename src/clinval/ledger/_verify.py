"""Offline verification of a ledger file, its checkpoints and (deep) its artifacts."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from filelock import FileLock, Timeout

from clinval.ledger._checkpoint import Checkpoint, CheckpointError, read_checkpoint
from clinval.ledger._encoding import (
    NotCanonical,
    b64decode_exact,
    check_relative_path,
    key_fingerprint,
    parse_canonical,
    path_sha256,
    sha256_hex,
)
from clinval.ledger._entry import shape_problem, signed_message
from clinval.ledger._errors import ErrorCode, LedgerError
from clinval.ledger._keys import key_export
from clinval.ledger._state import ChainState
from clinval.ledger._store import file_references
from clinval.ledger._trust import TrustRoot, read_trust_root, trust_findings

__all__ = ["VerifyResult", "verify"]

# Below this many entries a process pool costs more than it saves.
PARALLEL_MIN_ENTRIES = 4096
# The chain walk's cost per line as a share of one Ed25519 check (measured: 69 us and 144 us).
WALK_COST = 0.5
_LOCK_WAIT_SECONDS = 10.0
_KEY_MEMBER = b',"key":"'
_KEY_ADDED = b'"kind":"key_added"'
_CHANGED = -1

MSG_OK = "{size} entries verified; head {head}"
MSG_EMPTY = "the ledger is empty"
MSG_BAD_SIGNATURE = "signature does not verify with key {key}"
MSG_TORN = "the last line is incomplete ({count} bytes, no newline): an interrupted append"
MSG_TRUNCATED = "checkpoint {path} vouches for {size} entries but only {found} are complete"
MSG_INCONSISTENT = "entry {seq} does not hash to the head {head} of checkpoint {path}"
MSG_CHECKPOINT_KEY = "checkpoint {path} is signed by key {key}, not an active key of {signer!r}"
MSG_FILE_MISSING = "recorded file {path} is missing (sha256 {expected} at seq {seq})"
MSG_FILE_CHANGED = "file {path} hashes to {found}, not the {expected} recorded at seq {seq}"
MSG_FILE_PATH = "artifact reference cannot be checked: {problem}"
MSG_DEEP_NEEDS_ROOT = "verify(deep=True) needs root, the directory artifact paths are relative to"
MSG_CHANGED_WHILE_READING = "the ledger changed while its signatures were being checked"
MSG_KEY_FILE_CHANGED = "exported key file {path} differs from the key the ledger registered at seq {seq}"
MSG_KEY_FILE_UNKNOWN = "exported key file {path} names no key the ledger registered"

# At the same seq, the more specific finding wins.
_RANK_ENTRY, _RANK_SIGNATURE, _RANK_CHECKPOINT, _RANK_TAIL, _RANK_FILE = range(5)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`.

    Attributes
    ----------
    ok : bool
        True when every check passed.
    code : ErrorCode or None
        The stable code of the first failure (lowest seq), None when ok.
    seq : int or None
        The first bad seq, None when ok or when the failure concerns no entry.
    message : str
        A sentence for a person.
    size : int
        Number of complete lines read.
    head : str or None
        Digest of the last complete line (what a checkpoint would name).
    checkpoint : Checkpoint or None
        The checkpoint that was checked, if any and readable.
    files_checked : int
        Artifact files re-hashed (``deep=True`` only).
    genesis_key : str or None
        Key id registered at seq 0: with ``size`` and ``head``, what a reviewer pins.
    trust : TrustRoot or None
        The trust root that was checked, if any and readable.
    """

    ok: bool
    code: ErrorCode | None
    seq: int | None
    message: str
    size: int
    head: str | None
    checkpoint: Checkpoint | None = None
    files_checked: int = 0
    genesis_key: str | None = None
    trust: TrustRoot | None = None

    def trusted(self, seq: int) -> bool:
        """Whether entry ``seq`` was read and lies before the first problem found."""
        return seq < self.size and (self.ok or (self.seq is not None and seq < self.seq))

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.message}"
        where = "" if self.seq is None else f" at seq {self.seq}"
        return f"{self.code}{where}: {self.message}"


@dataclass(frozen=True, order=True)
class _Finding:
    seq: float
    rank: int
    code: ErrorCode
    message: str


def verify(
    ledger_path: str | os.PathLike[str],
    *,
    deep: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    trust: str | os.PathLike[str] | None = None,
    keys_dir: str | os.PathLike[str] | None = None,
) -> VerifyResult:
    """Check a ledger file offline and report the first problem.

    Works on the stored bytes: each line must be its own RFC 8785 serialisation, its
    SHA-256 must be the next line's ``prev``, its Ed25519 signature must verify over
    its stored bytes minus the ``sig`` member, and the key rules (see
    ``clinval.ledger``) must hold at its seq.

    Parameters
    ----------
    ledger_path : str or os.PathLike
        The ledger file. A missing file is an empty ledger.
    deep : bool
        Also re-hash every artifact the ledger refers to (the latest record of each
        path) and report DIGEST_MISMATCH for a changed or missing file; an older
        run's outputs and unpromoted candidates that DVC has since replaced are
        skipped when absent (see ``_Artifacts``).
    checkpoint : str or os.PathLike or None
        A checkpoint file kept from earlier; proves the ledger only grew since.
    root : str or os.PathLike or None
        Directory artifact paths are relative to; required when ``deep``.
    workers : int or None
        Processes for signature checks; None uses every available CPU for large
        ledgers, 1 checks in this process only.
    trust : str or os.PathLike or None
        A trust root kept off-system (``clinval audit witness``): seq 0 must register
        its genesis key (else UNTRUSTED_ROOT) and the ledger must extend every head it
        pins; its cosignatures must verify (else BAD_CHECKPOINT).
    keys_dir : str or os.PathLike or None
        The public-key export (``audit/keys``): every file in it must be exactly the
        export of a key the ledger registered (else DIGEST_MISMATCH).

    Returns
    -------
    VerifyResult

    Notes
    -----
    Files (``deep``, ``keys_dir``) are checked against digests the ledger holds, so a
    problem with the ledger itself is always reported first: until the ledger
    verifies, its digests vouch for nothing.
    """
    if deep and root is None:
        raise ValueError(MSG_DEEP_NEEDS_ROOT)
    path = Path(ledger_path)
    data = _read_consistently(path)
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].split(b"\n")[:-1]
    tail = data[complete:]
    findings: list[_Finding] = []
    state = ChainState()
    references = _Artifacts()
    limit = len(lines)
    # Other processes check the signatures of later chunks while this one walks the chain.
    signatures = _SignatureChecks(path, data, lines, workers)
    try:
        for seq, line in enumerate(lines):
            finding = _check_line(state, seq, line, references if deep else None)
            if finding is not None:
                findings.append(finding)
                limit = seq
                break
        bad_signature = signatures.first_bad(state, limit)
    finally:
        signatures.close()
    if bad_signature is not None:
        findings.append(bad_signature)
    if tail:
        findings.append(
            _Finding(len(lines), _RANK_TAIL, ErrorCode.TORN_TAIL, MSG_TORN.format(count=len(tail)))
        )
    checked = None
    if checkpoint is not None:
        checked, finding = _check_checkpoint(Path(checkpoint), lines, state)
        if finding is not None:
            findings.append(finding)
    pinned = None
    if trust is not None:
        pinned, trust_problems = _check_trust(Path(trust), lines, state)
        findings.extend(trust_problems)
    files_checked = 0
    if not findings:
        if deep:
            file_findings, files_checked = _check_files(Path(root or "."), references)
            findings.extend(file_findings)
        if keys_dir is not None:
            findings.extend(_check_key_files(Path(keys_dir), state))
    head = sha256_hex(lines[-1]) if lines else None
    first = min(findings) if findings else None
    if first is None:
        message = MSG_OK.format(size=len(lines), head=head) if lines else MSG_EMPTY
    else:
        message = first.message
    return VerifyResult(
        ok=first is None,
        code=None if first is None else first.code,
        seq=None if first is None or first.seq == float("inf") else int(first.seq),
        message=message,
        size=len(lines),
        head=head,
        checkpoint=checked,
        files_checked=files_checked,
        genesis_key=state.genesis_key,
        trust=pinned,
    )


def _read_consistently(path: Path) -> bytes:
    """Read the ledger under its writer lock when possible, so no append is half-seen."""
    if not path.exists():
        return b""
    try:
        with FileLock(str(path) + ".lock", timeout=_LOCK_WAIT_SECONDS):
            return path.read_bytes()
    except (Timeout, OSError):
        # Read-only copies cannot be locked; a torn tail then shows as TORN_TAIL.
        return path.read_bytes()


@dataclass
class _Artifacts:
    """Files the ledger refers to, with the latest recorded digest of each path.

    A pipeline run's outputs are replaced by the next run (DVC keeps the old bytes in its
    cache), and a candidate model is replaced when the plan or data change. So a path
    whose latest record is an older run's output, or an unpromoted candidate's model,
    may be absent (it is then skipped); when present it must still match. Everything
    else (the latest run's outputs, review-queue pulls, reports, promoted models) must
    be present and match.
    """

    latest: dict[str, tuple[int, str | None, str]] = field(default_factory=dict)
    last_run: int = -1
    promoted: set[str] = field(default_factory=set)

    def add(self, seq: int, kind: str, references: list[dict[str, Any]]) -> None:
        if kind == "pipeline_run":
            self.last_run = seq
        if kind == "model_version":
            self.promoted |= {r["path"] for r in references}
        for r in references:
            self.latest[r["path"]] = (seq, r["sha256"], kind)

    def may_be_absent(self, path: str) -> bool:
        seq, _, kind = self.latest[path]
        superseded_run = kind == "pipeline_run" and seq != self.last_run
        unpromoted = kind == "retrain" and path not in self.promoted
        return superseded_run or unpromoted


def _check_line(
    state: ChainState,
    seq: int,
    line: bytes,
    references: _Artifacts | None,
) -> _Finding | None:
    try:
        value = parse_canonical(line)
    except NotCanonical as exc:
        return _Finding(seq, _RANK_ENTRY, ErrorCode.NOT_CANONICAL, str(exc))
    problem = shape_problem(value)
    if problem is not None:
        return _Finding(seq, _RANK_ENTRY, ErrorCode.MALFORMED, problem)
    rejection = state.check(value)
    if rejection is not None:
        return _Finding(seq, _RANK_ENTRY, rejection.code, rejection.message)
    if references is not None:
        found = list(file_references(value["body"]))
        for reference in found:
            problem = check_relative_path(reference["path"])
            if problem is not None:
                return _Finding(
                    seq, _RANK_ENTRY, ErrorCode.MALFORMED, MSG_FILE_PATH.format(problem=problem)
                )
        references.add(seq, value["kind"], found)
    state.apply(value, sha256_hex(line))
    return None


# -- signatures --------------------------------------------------------------------
class _SignatureChecks:
    """Ed25519 checks of every line, split across processes for large ledgers.

    Worker processes start on chunks 2..n as soon as the file is read, using the keys
    a quick scan of the ``key_added`` lines finds; this process checks chunk 1 after
    its walk of the chain. Only failures below the first chain failure are reported,
    and the chain walk has by then proved those lines' keys registered and active.
    """

    def __init__(self, path: Path, data: bytes, lines: list[bytes], workers: int | None) -> None:
        self._lines = lines
        self._count = _worker_count(workers, len(lines))
        self._bounds = _chunk_bounds(len(lines), self._count)
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future[int | None]] = []
        if self._count == 1:
            return
        keys = _scan_keys(lines)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        # Fork is cheap and safe while this process runs no other threads.
        method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
        self._pool = ProcessPoolExecutor(
            max_workers=self._count - 1, mp_context=multiprocessing.get_context(method)
        )
        for part in range(1, self._count):
            start, stop = offsets[self._bounds[part]], offsets[self._bounds[part + 1]]
            # Workers re-read their chunk; the digest proves they saw the bytes read here.
            expected = sha256_hex(memoryview(data)[start:stop])
            self._futures.append(
                self._pool.submit(
                    _verify_chunk, str(path), start, stop, self._bounds[part], keys, expected
                )
            )

    def first_bad(self, state: ChainState, limit: int) -> _Finding | None:
        """Return the lowest bad signature below ``limit`` (the first chain failure)."""
        keys = {key_id: key.public_key for key_id, key in state.keys.items()}
        results = [_first_bad_in(self._lines[: min(self._bounds[1], limit)], 0, keys)]
        results.extend(future.result() for future in self._futures)
        if any(result == _CHANGED for result in results):
            return _Finding(0, _RANK_SIGNATURE, ErrorCode.INCONSISTENT, MSG_CHANGED_WHILE_READING)
        bad = [result for result in results if result is not None and result < limit]
        if not bad:
            return None
        seq = min(bad)
        key_id = _key_of(self._lines[seq]).decode("ascii", "replace")
        return _Finding(
            seq, _RANK_SIGNATURE, ErrorCode.BAD_SIGNATURE, MSG_BAD_SIGNATURE.format(key=key_id)
        )

    def close(self) -> None:
        if self._pool is not None:
            for future in self._futures:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None


def _chunk_bounds(entries: int, count: int) -> list[int]:
    """Line bounds of ``count`` signature chunks; the first, this process's, is smaller.

    This process also walks the chain, which costs about half a signature check per
    line (parse, canonical form, key rules, hash), so it checks a smaller share:
    ``(1 - WALK_COST * (count - 1)) / count`` of the lines, none from three processes on.
    """
    if count == 1:
        return [0, entries]
    first = round(entries * max(0.0, 1 - WALK_COST * (count - 1)) / count)
    others = count - 1
    return [0] + [first + round((entries - first) * part / others) for part in range(others + 1)]


def _worker_count(workers: int | None, entries: int) -> int:
    if workers is not None:
        return max(1, min(workers, max(entries, 1)))
    if entries < PARALLEL_MIN_ENTRIES:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _scan_keys(lines: list[bytes]) -> dict[str, bytes]:
    """Return key id -> raw public key for every well-formed ``key_added`` line."""
    keys = {}
    for line in lines:
        if _KEY_ADDED not in line:
            continue
        try:
            body = json.loads(line)["body"]
            public_key = b64decode_exact(body["public_key"], 32)
        except (ValueError, KeyError, TypeError):
            continue
        if public_key is not None and body.get("key_id") == key_fingerprint(public_key):
            keys[body["key_id"]] = public_key
    return keys


def _key_of(line: bytes) -> bytes:
    # Members after "key" (kind, prev, seq, sig, time) cannot contain ',"key":"', so
    # the last occurrence is the top-level member, never one inside the body.
    start = line.rindex(_KEY_MEMBER) + len(_KEY_MEMBER)
    return line[start : start + 32]


def _first_bad_in(lines: list[bytes], first_seq: int, keys: dict[str, bytes]) -> int | None:
    loaded: dict[bytes, Ed25519PublicKey] = {}
    for offset, line in enumerate(lines):
        try:
            key_id = _key_of(line)
            public_key = loaded.get(key_id)
            if public_key is None:
                public_key = Ed25519PublicKey.from_public_bytes(keys[key_id.decode("ascii")])
                loaded[key_id] = public_key
            message, signature = signed_message(line)
            public_key.verify(signature, message)
        except (InvalidSignature, KeyError, ValueError):
            return first_seq + offset
    return None


def _verify_chunk(
    path: str, start: int, stop: int, first_seq: int, keys: dict[str, bytes], expected: str
) -> int | None:
    """Worker: check the signatures of the lines in bytes ``[start, stop)`` of ``path``."""
    with open(path, "rb") as handle:
        handle.seek(start)
        chunk = handle.read(stop - start)
    if sha256_hex(chunk) != expected:
        return _CHANGED
    return _first_bad_in(chunk.split(b"\n")[:-1], first_seq, keys)


# -- checkpoint --------------------------------------------------------------------
def _check_checkpoint(
    path: Path, lines: list[bytes], state: ChainState
) -> tuple[Checkpoint | None, _Finding | None]:
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as exc:
        return None, _Finding(float("inf"), _RANK_CHECKPOINT, ErrorCode.BAD_CHECKPOINT, str(exc))
    if checkpoint.size > len(lines):
        message = MSG_TRUNCATED.format(path=path, size=checkpoint.size, found=len(lines))
        return checkpoint, _Finding(len(lines), _RANK_CHECKPOINT, ErrorCode.TRUNCATED, message)
    last = checkpoint.size - 1
    if sha256_hex(lines[last]) != checkpoint.head:
        message = MSG_INCONSISTENT.format(seq=last, head=checkpoint.head, path=path)
        return checkpoint, _Finding(last, _RANK_CHECKPOINT, ErrorCode.INCONSISTENT, message)
    key = state.keys.get(checkpoint.key)
    if key is None or key.user_id != checkpoint.signer or not key.active_at(last):
        message = MSG_CHECKPOINT_KEY.format(path=path, key=checkpoint.key, signer=checkpoint.signer)
        return checkpoint, _Finding(last, _RANK_CHECKPOINT, ErrorCode.BAD_CHECKPOINT, message)
    return checkpoint, None


def _check_trust(path: Path, lines: list[bytes], state: ChainState) -> tuple[TrustRoot | None, list[_Finding]]:
    try:
        pinned = read_trust_root(path)
    except LedgerError as exc:
        return None, [_Finding(float("inf"), _RANK_CHECKPOINT, ErrorCode.BAD_CHECKPOINT, exc.message)]
    found = trust_findings(pinned, lines, state.genesis_key)
    return pinned, [_Finding(seq, _RANK_CHECKPOINT, code, message) for seq, code, message in found]


def _check_key_files(directory: Path, state: ChainState) -> list[_Finding]:
    """Every file of the public-key export must say exactly what the ledger registered."""
    if not directory.is_dir():
        return []
    findings = []
    present = {path.stem: path for path in directory.glob("*.json")}
    for key_id, key in state.keys.items():
        path = present.pop(key_id, None)
        # A missing export vouches for nothing and misleads nobody; a present one must be exact.
        if path is not None and path.read_text(encoding="utf-8", errors="replace") != key_export(key):
            message = MSG_KEY_FILE_CHANGED.format(path=path, seq=key.added_seq)
            findings.append(_Finding(key.added_seq, _RANK_FILE, ErrorCode.DIGEST_MISMATCH, message))
    for path in present.values():
        findings.append(_Finding(float("inf"), _RANK_FILE, ErrorCode.DIGEST_MISMATCH,
                                 MSG_KEY_FILE_UNKNOWN.format(path=path)))
    return findings


# -- deep: artifacts ---------------------------------------------------------------
def _check_files(root: Path, references: _Artifacts) -> tuple[list[_Finding], int]:
    findings = []
    checked = 0
    for relative, (seq, expected, _) in sorted(references.latest.items(), key=lambda item: item[1][0]):
        if expected is None:
            continue
        full = root / relative
        if not full.exists() and references.may_be_absent(relative):
            continue  # replaced by a later run or plan: its bytes live on in the DVC cache
        checked += 1
        if not full.exists():
            message = MSG_FILE_MISSING.format(path=relative, expected=expected, seq=seq)
            findings.append(_Finding(seq, _RANK_FILE, ErrorCode.DIGEST_MISMATCH, message))
            continue
        found = path_sha256(full)
        if found != expected:
            message = MSG_FILE_CHANGED.format(
                path=relative, found=found, expected=expected, seq=seq
            )
            findings.append(_Finding(seq, _RANK_FILE, ErrorCode.DIGEST_MISMATCH, message))
    return findings, checked
