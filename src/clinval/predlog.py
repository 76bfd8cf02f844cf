"""The prediction log: every answered prediction, durable before the answer, sealed in the ledger.

21 CFR 11.10(e) asks for a secure, time-stamped audit trail of electronic records; the
scoring service's outputs are such records. The log is a folder (``data/predictions``)::

    wal/<segment>.jsonl        open segments: one framed line per request, appended and
                               fsynced before the service answers (group commit)
    segments/<segment>.parquet closed segments; each one's SHA-256 is in a signed
                               ``prediction_batch`` ledger entry (count, time range)
    outcomes/<sha256>.parquet  observed outcomes added later (``clinval outcomes add``)

A WAL line is ``<crc32 as 8 hex digits> <JSON>\\n``. The first line of a segment is its
header (segment id, model in force, feature names); every further line is one request,
column-wise: its id, UTC time in microseconds, risks, inputs and pass-through ids. The
prediction id of record ``i`` of request ``r`` is ``r-i`` (:func:`prediction_id`).

Group commit: requests hand their line to :meth:`PredictionLog.submit`; one writer
thread writes everything pending with a single ``write`` and ``fdatasync`` and then
resolves every waiting request, so concurrent requests share one flush. A failed write
or flush fails the whole batch (the service answers 503) and abandons the segment; the
next batch starts a new one. Nothing is ever answered that is not on disk.

Sealing (a closer thread, recovery at start, and ``clinval monitor``) reads a WAL,
keeps every complete line whose checksum holds, truncates a torn tail (an interrupted
write that was never acknowledged), writes the Parquet file atomically, appends the
``prediction_batch`` entry and only then removes the WAL. Each step can be repeated
after a crash; a WAL line that is damaged *before* a good line is not a crash and is
refused (:class:`LogCorrupt`). A WAL in use is locked (``flock``) by its writer, so a
sealer never touches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clinval._io import sha256_file
from clinval.errors import ClinvalError, InputError

if TYPE_CHECKING:
    from clinval.ledger import Entry, Ledger, Signs

__all__ = [
    "BATCH_KIND",
    "LOG_COLUMNS",
    "LIVE_PREFIX",
    "LivePeriods",
    "LogCorrupt",
    "LogSettings",
    "LogUnavailable",
    "PredictionLog",
    "RecoveryReport",
    "SealedSegment",
    "SegmentHeader",
    "OutcomesAdded",
    "add_outcomes",
    "encode_request",
    "export_predictions",
    "live_periods",
    "period_end",
    "period_labels",
    "prediction_id",
    "read_outcomes",
    "read_wal",
    "recover",
    "seal_segment",
    "sealed_entries",
]

BATCH_KIND = "prediction_batch"
"""The ledger entry kind that seals a closed segment."""
WAL_DIR, SEGMENTS_DIR, OUTCOMES_DIR = "wal", "segments", "outcomes"
WAL_SUFFIX, SEGMENT_SUFFIX = ".jsonl", ".parquet"
LOG_COLUMNS = ("prediction_id", "request_id", "time", "model_id", "model_sha256", "risk",
               "record_id", "patient_id", "unseen")
"""Columns of a sealed segment before the feature columns; no feature may take these names."""
PASS_THROUGH = ("record_id", "patient_id")
"""Optional per-record identifiers a client may send to join outcomes later."""
_FRAME = 9  # "xxxxxxxx " before the JSON
_CLOSER_RETRY_SECONDS = 5.0

MSG_UNAVAILABLE = "the prediction log cannot write ({reason}); nothing was answered"
MSG_CORRUPT = (
    "{path}: line {line} is damaged ({reason}) but good lines follow it: this is not an "
    "interrupted write; keep the file for investigation and move it out of {wal} to start"
)
MSG_OUTSIDE_ROOT = "the prediction log {directory} must lie inside the repository root {root}: the ledger records paths relative to it"
MSG_COLUMN_CLASH = "feature name(s) {names} clash with prediction log columns {columns}; rename them in the study"
MSG_SEGMENT_CHANGED = (
    "{path} hashes to {found}, not the {expected} sealed at ledger seq {seq}: a prediction "
    "was edited or deleted (`clinval audit verify --deep` reports it too)"
)
MSG_SEGMENT_MISSING = "{path} is missing but sealed at ledger seq {seq}: a segment of the prediction log was deleted"
MSG_STOPPED = "the prediction log is closed"


class LogUnavailable(ClinvalError):
    """The log could not make a batch durable; the service answers 503."""


class LogCorrupt(ClinvalError, ValueError):
    """A WAL file is damaged in a way a crash cannot explain."""


@dataclass(frozen=True)
class LogSettings:
    """When an open segment is closed (whichever comes first).

    Attributes
    ----------
    max_segment_records : int
        Predictions per segment.
    max_segment_bytes : int
        Bytes of WAL per segment.
    max_segment_seconds : float
        Age of a segment's first write.
    """

    max_segment_records: int = 100_000
    max_segment_bytes: int = 64 * 1024 * 1024
    max_segment_seconds: float = 3600.0


@dataclass(frozen=True)
class SegmentHeader:
    """The first line of a segment: what every prediction in it was made with."""

    segment_id: str
    model_id: str
    model_sha256: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"segment": self.segment_id, "model": {"id": self.model_id, "sha256": self.model_sha256},
                "numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SegmentHeader:
        return cls(segment_id=value["segment"], model_id=value["model"]["id"], model_sha256=value["model"]["sha256"],
                   numeric=tuple(value["numeric"]), categorical=tuple(value["categorical"]))


@dataclass(frozen=True)
class SealedSegment:
    """A closed segment and the ledger entry that seals it."""

    segment_id: str
    path: str
    sha256: str
    count: int
    first_time: str | None
    last_time: str | None
    ledger_seq: int
    torn_bytes: int = 0


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` found and sealed."""

    sealed: tuple[SealedSegment, ...]
    skipped_in_use: tuple[str, ...]
    torn_bytes: int
    seconds: float

    @property
    def records(self) -> int:
        return sum(s.count for s in self.sealed)


# ---------------------------------------------------------------------------- lines
def prediction_id(request_id: str, index: int) -> str:
    """The id of record ``index`` of request ``request_id``."""
    return f"{request_id}-{index}"


def _frame(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _dumps(value: Any) -> bytes:
    # allow_nan=False: a NaN would not round-trip as JSON; inputs are validated finite
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_request(
    *,
    request_id: str,
    time_us: int,
    risk: Sequence[float],
    inputs: Mapping[str, Sequence[Any]],
    unseen: Sequence[Sequence[str]],
    pass_through: Mapping[str, Sequence[Any]] | None = None,
) -> bytes:
    """The WAL line of one answered request (columns of equal length)."""
    body: dict[str, Any] = {"r": request_id, "t": time_us, "risk": list(risk), "in": dict(inputs)}
    if any(unseen):
        body["unseen"] = [list(u) for u in unseen]
    for name, values in (pass_through or {}).items():
        if any(v is not None for v in values):
            body[name] = list(values)
    return _frame(_dumps(body))


@dataclass(frozen=True)
class WalContents:
    """What a WAL file holds: its header, its requests, and how it ends."""

    header: SegmentHeader | None
    requests: tuple[Mapping[str, Any], ...]
    good_bytes: int
    torn_bytes: int


def read_wal(path: str | os.PathLike[str]) -> WalContents:
    """Read a WAL file; a damaged or incomplete tail is reported, not returned.

    Raises
    ------
    LogCorrupt
        If a damaged line is followed by a good one.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    header: SegmentHeader | None = None
    requests: list[Mapping[str, Any]] = []
    good = 0
    for number, line in enumerate(lines[:-1], start=1):
        problem, value = _parse_line(line)
        if problem is not None:
            if any(_parse_line(later)[0] is None for later in lines[number:-1]):
                raise LogCorrupt(MSG_CORRUPT.format(path=path, line=number, reason=problem, wal=path.parent))
            break
        if header is None:
            header = SegmentHeader.from_json(value)
        else:
            requests.append(value)
        good += len(line) + 1
    return WalContents(header=header, requests=tuple(requests), good_bytes=good, torn_bytes=len(data) - good)


def _parse_line(line: bytes) -> tuple[str | None, Any]:
    if len(line) < _FRAME + 2 or line[8:9] != b" ":
        return "too short or not framed", None
    payload = line[_FRAME:]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return "checksum mismatch", None
        return None, json.loads(payload)
    except ValueError as exc:
        return f"not JSON: {exc}", None


def _table(header: SegmentHeader, requests: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The Parquet table of a segment: :data:`LOG_COLUMNS`, then one column per feature."""
    ids: list[str] = []
    request_ids: list[str] = []
    times: list[int] = []
    risk: list[float] = []
    unseen: list[list[str]] = []
    passed: dict[str, list[Any]] = {name: [] for name in PASS_THROUGH}
    features: dict[str, list[Any]] = {name: [] for name in header.numeric + header.categorical}
    for request in requests:
        n = len(request["risk"])
        ids.extend(prediction_id(request["r"], i) for i in range(n))
        request_ids.extend([request["r"]] * n)
        times.extend([request["t"]] * n)
        risk.extend(request["risk"])
        unseen.extend(request.get("unseen") or [[]] * n)
        for name in PASS_THROUGH:
            passed[name].extend(request.get(name) or [None] * n)
        for name, values in features.items():
            values.extend(request["in"][name])
    count = len(ids)
    columns = {
        "prediction_id": pa.array(ids, pa.string()),
        "request_id": pa.array(request_ids, pa.string()),
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "model_id": pa.array([header.model_id] * count, pa.string()),
        "model_sha256": pa.array([header.model_sha256] * count, pa.string()),
        "risk": pa.array(risk, pa.float64()),
        "record_id": pa.array(passed["record_id"], pa.string()),
        "patient_id": pa.array(passed["patient_id"], pa.string()),
        "unseen": pa.array(unseen, pa.list_(pa.string())),
    }
    for name in header.numeric:
        columns[name] = pa.array(features[name], pa.float64())
    for name in header.categorical:
        columns[name] = pa.array(features[name], pa.string())
    return pa.table(columns)


def _iso(time_us: int) -> str:
    """UTC time as the ledger writes it."""
    from clinval.ledger import TIME_FORMAT

    seconds, micros = divmod(time_us, 1_000_000)  # exact: a float of µs since 1970 can be off by one
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros).strftime(TIME_FORMAT)


# ---------------------------------------------------------------------------- sealing
@dataclass(frozen=True)
class _Place:
    """Where a log lives and how the ledger names its files."""

    directory: Path
    root: Path

    @property
    def wal(self) -> Path:
        return self.directory / WAL_DIR

    @property
    def segments(self) -> Path:
        return self.directory / SEGMENTS_DIR

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root.resolve()).as_posix()


def _place(directory: str | os.PathLike[str], root: str | os.PathLike[str]) -> _Place:
    place = _Place(directory=Path(directory), root=Path(root))
    try:
        place.directory.resolve().relative_to(place.root.resolve())
    except ValueError:
        raise InputError(MSG_OUTSIDE_ROOT.format(directory=directory, root=root)) from None
    return place


def sealed_entries(ledger: Ledger) -> dict[str, Entry]:
    """Segment id -> the ``prediction_batch`` entry that sealed it."""
    return {e.body["segment_id"]: e for e in ledger.entries() if e.kind == BATCH_KIND}


def seal_segment(
    wal_path: str | os.PathLike[str],
    *,
    directory: str | os.PathLike[str],
    root: str | os.PathLike[str],
    ledger: Ledger,
    signer: Signs,
    sealed: Mapping[str, Entry] | None = None,
) -> SealedSegment | None:
    """Close one WAL segment: Parquet, ledger entry, then remove the WAL.

    Returns None when the WAL is locked by a running writer (it is not ours to close)
    or holds no prediction (it is removed).

    Raises
    ------
    LogCorrupt
        If the WAL is damaged before its end.
    """
    place = _place(directory, root)
    wal_path = Path(wal_path)
    try:
        descriptor = os.open(wal_path, os.O_RDWR)
    except FileNotFoundError:
        return None  # another sealer finished it
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not wal_path.exists():
            return None
        contents = read_wal(wal_path)
        if contents.torn_bytes:
            # never acknowledged: the writer answers only after a complete line is flushed
            os.ftruncate(descriptor, contents.good_bytes)
            os.fsync(descriptor)
        if contents.header is None or not contents.requests:
            wal_path.unlink()
            return None
        header = contents.header
        sealed = sealed_entries(ledger) if sealed is None else sealed
        target = place.segments / f"{header.segment_id}{SEGMENT_SUFFIX}"
        entry = sealed.get(header.segment_id)
        if entry is None:
            table = _table(header, contents.requests)
            _write_parquet_atomically(table, target)
            times = [r["t"] for r in contents.requests]
            body: dict[str, Any] = {
                "count": table.num_rows,
                "first_time": _iso(min(times)),
                "last_time": _iso(max(times)),
                "model": {"id": header.model_id, "sha256": header.model_sha256},
                "requests": len(contents.requests),
                "segment": {"path": place.relative(target), "sha256": sha256_file(target)},
                "segment_id": header.segment_id,
            }
            if contents.torn_bytes:
                body["torn_bytes"] = contents.torn_bytes
            entry = ledger.append(kind=BATCH_KIND, body=body, signer=signer)
        wal_path.unlink()
        _fsync_directory(wal_path.parent)
        return _sealed(entry)
    finally:
        os.close(descriptor)


def _sealed(entry: Entry) -> SealedSegment:
    body = entry.body
    return SealedSegment(segment_id=body["segment_id"], path=body["segment"]["path"], sha256=body["segment"]["sha256"],
                         count=body["count"], first_time=body.get("first_time"), last_time=body.get("last_time"),
                         ledger_seq=entry.seq, torn_bytes=body.get("torn_bytes", 0))


def _write_parquet_atomically(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def recover(
    *, directory: str | os.PathLike[str], root: str | os.PathLike[str], ledger: Ledger, signer: Signs
) -> RecoveryReport:
    """Seal every WAL segment no running writer holds (after a crash, or from the monitor)."""
    started = time.perf_counter()
    place = _place(directory, root)
    sealed: list[SealedSegment] = []
    skipped: list[str] = []
    known = sealed_entries(ledger)
    for path in sorted(place.wal.glob(f"*{WAL_SUFFIX}")) if place.wal.exists() else []:
        result = seal_segment(path, directory=place.directory, root=place.root, ledger=ledger, signer=signer, sealed=known)
        if result is not None:
            sealed.append(result)
        elif path.exists():
            skipped.append(path.name)
    return RecoveryReport(sealed=tuple(sealed), skipped_in_use=tuple(skipped),
                          torn_bytes=sum(s.torn_bytes for s in sealed), seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------- writing
@dataclass
class LogStats:
    """Counters the metrics read (written by the writer and closer threads only)."""

    records_logged: int = 0
    requests_logged: int = 0
    commits: int = 0
    failed_batches: int = 0
    segments_sealed: int = 0
    seal_failures: int = 0
    last_error: str | None = None  # of the last write; None once a write succeeds again
    last_seal_error: str | None = None  # sealing is retried; answering does not depend on it
    unsealed_since: float | None = None  # wall time of the oldest prediction not yet sealed
    recovery: RecoveryReport | None = None


@dataclass
class _Segment:
    header: SegmentHeader
    path: Path
    descriptor: int
    size: int
    records: int = 0
    first_write: float = field(default_factory=time.time)


class PredictionLog:
    """Durable, group-committed appends of answered requests; segments sealed in the ledger.

    Parameters
    ----------
    directory : path
        The log folder (inside ``root``).
    root : path
        Repository root; ledger paths are relative to it.
    ledger : Ledger
        Where closed segments are sealed.
    signer : Signer
        The machine identity that signs ``prediction_batch`` entries.
    model_id, model_sha256 : str
        The model in force (written in each segment's header).
    numeric, categorical : sequence of str
        The feature columns.
    settings : LogSettings
        When segments roll.
    on_commit : callable or None
        Called by the writer after each durable batch with (records, seconds from the
        first submit to the flush); metrics use it.
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str],
        root: str | os.PathLike[str],
        ledger: Ledger,
        signer: Signs,
        model_id: str,
        model_sha256: str,
        numeric: Sequence[str],
        categorical: Sequence[str],
        settings: LogSettings = LogSettings(),
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self._place = _place(directory, root)
        clash = sorted(set(LOG_COLUMNS) & (set(numeric) | set(categorical)))
        if clash:
            raise InputError(MSG_COLUMN_CLASH.format(names=clash, columns=list(LOG_COLUMNS)))
        self._ledger, self._signer = ledger, signer
        self._model = (model_id, model_sha256)
        self._numeric, self._categorical = tuple(numeric), tuple(categorical)
        self._settings = settings
        self._on_commit = on_commit
        self.stats = LogStats()
        self._cv = threading.Condition()
        self._pending: list[tuple[bytes, int, float, Future[None]]] = []
        self._roll_waiters: list[Future[list[SealedSegment]]] = []
        self._stopping = False
        self._segment: _Segment | None = None
        self._to_seal: queue.Queue[tuple[Path | None, list[Future[list[SealedSegment]]]]] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="predlog-writer", daemon=True)
        self._closer = threading.Thread(target=self._seal_loop, name="predlog-closer", daemon=True)
        self._started = False

    @property
    def directory(self) -> Path:
        return self._place.directory

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> RecoveryReport:
        """Seal what an earlier run left behind, then start the writer and closer."""
        self._place.wal.mkdir(parents=True, exist_ok=True)
        self._place.segments.mkdir(parents=True, exist_ok=True)
        report = recover(directory=self._place.directory, root=self._place.root, ledger=self._ledger, signer=self._signer)
        self.stats.recovery = report
        self._writer.start()
        self._closer.start()
        self._started = True
        return report

    def close(self) -> None:
        """Flush what is pending, seal the open segment, stop the threads."""
        if not self._started:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._writer.join()
        self._to_seal.put((None, []))
        self._closer.join()
        self._started = False

    # -- appending -----------------------------------------------------------------
    def submit(self, line: bytes, *, records: int) -> Future[None]:
        """Queue one request's line; the future resolves once it is on disk.

        The future fails with :class:`LogUnavailable` if the batch could not be made durable.
        """
        future: Future[None] = Future()
        with self._cv:
            if self._stopping:
                future.set_exception(LogUnavailable(MSG_STOPPED))
                return future
            self._pending.append((line, records, time.perf_counter(), future))
            self._cv.notify()
        return future

    def roll(self) -> Future[list[SealedSegment]]:
        """Close the open segment now; the future resolves with what was sealed."""
        future: Future[list[SealedSegment]] = Future()
        with self._cv:
            self._roll_waiters.append(future)
            self._cv.notify()
        return future

    def header(self) -> SegmentHeader:
        """A header for a new segment of the model in force."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return SegmentHeader(segment_id=f"{stamp}-{uuid.uuid4().hex[:8]}", model_id=self._model[0],
                             model_sha256=self._model[1], numeric=self._numeric, categorical=self._categorical)

    # -- writer thread ---------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not (self._pending or self._roll_waiters or self._stopping):
                    self._cv.wait(timeout=self._seconds_to_age_roll())
                    if self._segment_too_old():
                        break
                batch, self._pending = self._pending, []
                waiters, self._roll_waiters = self._roll_waiters, []
                stopping = self._stopping
            if batch:
                self._commit(batch)
            if waiters or stopping or self._segment_too_old():
                self._roll_segment(waiters)
            if stopping:
                return

    def _seconds_to_age_roll(self) -> float | None:
        if self._segment is None:
            return None
        return max(0.01, self._segment.first_write + self._settings.max_segment_seconds - time.time())

    def _segment_too_old(self) -> bool:
        segment = self._segment
        return segment is not None and time.time() - segment.first_write >= self._settings.max_segment_seconds

    def _commit(self, batch: list[tuple[bytes, int, float, Future[None]]]) -> None:
        data = b"".join(line for line, _, _, _ in batch)
        records = sum(n for _, n, _, _ in batch)
        try:
            segment = self._segment
            if segment is not None and (
                segment.records + records > self._settings.max_segment_records
                or segment.size + len(data) > self._settings.max_segment_bytes
            ) and segment.records:
                self._roll_segment([])
            if self._segment is None:
                self._segment = self._open_segment()
            segment = self._segment
            _write_all(segment.descriptor, data)
            os.fdatasync(segment.descriptor)
        except OSError as exc:
            self._abandon_segment()
            self.stats.failed_batches += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc.strerror or exc}"
            error = LogUnavailable(MSG_UNAVAILABLE.format(reason=exc.strerror or exc))
            for _, _, _, future in batch:
                future.set_exception(error)
            return
        segment.size += len(data)
        segment.records += records
        if self.stats.unsealed_since is None:
            self.stats.unsealed_since = time.time()
        self.stats.records_logged += records
        self.stats.requests_logged += len(batch)
        self.stats.commits += 1
        self.stats.last_error = None
        if self._on_commit is not None:
            self._on_commit(records, time.perf_counter() - min(t for _, _, t, _ in batch))
        for _, _, _, future in batch:
            future.set_result(None)

    def _open_segment(self) -> _Segment:
        header = self.header()
        path = self._place.wal / f"{header.segment_id}{WAL_SUFFIX}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            line = _frame(_dumps(header.to_json()))
            _write_all(descriptor, line)
            os.fdatasync(descriptor)
            _fsync_directory(path.parent)
        except BaseException:
            os.close(descriptor)
            raise
        return _Segment(header=header, path=path, descriptor=descriptor, size=len(line))

    def _abandon_segment(self) -> None:
        """After a failed write the segment's tail is unknown: stop writing to it."""
        segment, self._segment = self._segment, None
        if segment is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(segment.descriptor, segment.size)  # drop the unacknowledged batch
        os.close(segment.descriptor)
        self._to_seal.put((segment.path, []))

    def _roll_segment(self, waiters: list[Future[list[SealedSegment]]]) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            os.close(segment.descriptor)  # releases the flock: the closer may take it
        if segment is not None or waiters:  # (None, []) is the closer's stop signal
            self._to_seal.put((segment.path if segment is not None else None, waiters))

    # -- closer thread ---------------------------------------------------------------
    def _seal_loop(self) -> None:
        backlog: list[Path] = []
        while True:
            try:
                path, waiters = self._to_seal.get(timeout=_CLOSER_RETRY_SECONDS if backlog else None)
            except queue.Empty:
                path, waiters = None, []
            else:
                if path is None and not waiters:  # close() asked us to stop, after the writer ended
                    self._seal_backlog(backlog)
                    return
            if path is not None:
                backlog.append(path)
            sealed = self._seal_backlog(backlog)
            for future in waiters:
                if backlog:
                    future.set_exception(LogUnavailable(MSG_UNAVAILABLE.format(reason=self.stats.last_seal_error)))
                else:
                    future.set_result(sealed)

    def _seal_backlog(self, backlog: list[Path]) -> list[SealedSegment]:
        sealed: list[SealedSegment] = []
        while backlog:
            try:
                result = seal_segment(backlog[0], directory=self._place.directory, root=self._place.root,
                                      ledger=self._ledger, signer=self._signer)
            except Exception as exc:  # the ledger is locked or the disk is full: retry later
                self.stats.seal_failures += 1
                self.stats.last_seal_error = f"sealing {backlog[0].name}: {type(exc).__name__}: {exc}"
                break
            backlog.pop(0)
            self.stats.last_seal_error = None
            if result is not None:
                sealed.append(result)
                self.stats.segments_sealed += 1
        if not backlog and self._segment is None:
            self.stats.unsealed_since = None
        return sealed


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


# ---------------------------------------------------------------------------- reading
def _segment_frame(header: SegmentHeader, requests: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return _table(header, requests).to_pandas()


def export_predictions(
    *,
    directory: str | os.PathLike[str],
    root: str | os.PathLike[str],
    ledger: Ledger,
    since: datetime | None = None,
    until: datetime | None = None,
    include_open: bool = True,
) -> pd.DataFrame:
    """Every logged prediction, sealed segments first (each checked against its ledger
    digest), then the open segments' durable lines (``sealed`` False).

    Raises
    ------
    LogCorrupt
        If a sealed segment is missing or its digest differs from the ledger's.
    """
    place = _place(directory, root)
    frames = []
    for segment_id, entry in sorted(sealed_entries(ledger).items()):
        reference = entry.body["segment"]
        path = place.root / reference["path"]
        if not path.exists():
            raise LogCorrupt(MSG_SEGMENT_MISSING.format(path=reference["path"], seq=entry.seq))
        found = sha256_file(path)
        if found != reference["sha256"]:
            raise LogCorrupt(MSG_SEGMENT_CHANGED.format(path=reference["path"], found=found,
                                                        expected=reference["sha256"], seq=entry.seq))
        frames.append(pd.read_parquet(path).assign(segment=segment_id, sealed=True, ledger_seq=entry.seq))
    if include_open and place.wal.exists():
        for path in sorted(place.wal.glob(f"*{WAL_SUFFIX}")):
            contents = read_wal(path)
            if contents.header is not None and contents.requests:
                frames.append(_segment_frame(contents.header, contents.requests)
                              .assign(segment=contents.header.segment_id, sealed=False, ledger_seq=pd.NA))
    if not frames:
        return pd.DataFrame(columns=[*LOG_COLUMNS, "segment", "sealed", "ledger_seq"])
    frame = pd.concat(frames, ignore_index=True)
    frame["ledger_seq"] = frame["ledger_seq"].astype("Int64")
    if since is not None:
        frame = frame[frame["time"] >= _utc(since)]
    if until is not None:
        frame = frame[frame["time"] < _utc(until)]
    return frame.sort_values(["time", "prediction_id"], kind="stable").reset_index(drop=True)


def _utc(moment: datetime) -> pd.Timestamp:
    """A time as UTC; a naive time is taken to be UTC already."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# ---------------------------------------------------------------------------- outcomes
MSG_OUTCOME_COLUMN = "{source}: column {column!r} is missing; an outcomes file needs {needed} (it has {found})"
MSG_OUTCOME_ID = "{source}: column 'record_id' has a missing value at data row {row}; every outcome needs the record id it belongs to"
MSG_OUTCOME_DUPLICATE = "{source}: record_id {record!r} appears more than once (data rows {rows})"
MSG_OUTCOME_CONFLICT = "{source}: record_id {record!r} has outcome {new!r} but {earlier} already gave it {old!r}; outcomes are never overwritten"


@dataclass(frozen=True)
class OutcomesAdded:
    """What :func:`add_outcomes` stored."""

    path: Path | None
    added: int
    already_known: int
    matched: int


def read_outcomes(directory: str | os.PathLike[str], *, target: str) -> pd.DataFrame:
    """Every stored outcome: ``record_id``, ``target`` and the file it came from."""
    folder = Path(directory) / OUTCOMES_DIR
    frames = [pd.read_parquet(path).assign(source=path.name) for path in sorted(folder.glob("*.parquet"))] if folder.exists() else []
    if not frames:
        return pd.DataFrame({"record_id": pd.Series(dtype="string"), target: pd.Series(dtype="string"), "source": pd.Series(dtype="string")})
    return pd.concat(frames, ignore_index=True)


def add_outcomes(
    frame: pd.DataFrame, *, source: str, directory: str | os.PathLike[str], target: str, known_records: Sequence[str] = ()
) -> OutcomesAdded:
    """Store observed outcomes (``record_id`` and the study's target column, raw values).

    Outcomes already stored with the same value are skipped; a different value for a
    stored record is refused, as is a file with missing or duplicate record ids.

    Raises
    ------
    clinval.errors.InputError
        Naming the file, the column and the row.
    """
    missing = [c for c in ("record_id", target) if c not in frame.columns]
    if missing:
        raise InputError(MSG_OUTCOME_COLUMN.format(source=source, column=missing[0], needed=["record_id", target],
                                                   found=list(map(str, frame.columns))[:12]))
    new = pd.DataFrame({"record_id": frame["record_id"].astype("string").str.strip(),
                        target: frame[target].astype("string").str.strip()})
    blank = new["record_id"].isna() | (new["record_id"] == "")
    if blank.any():
        raise InputError(MSG_OUTCOME_ID.format(source=source, row=int(blank.to_numpy().argmax()) + 1))
    duplicated = new["record_id"].duplicated(keep=False)
    if duplicated.any():
        record = new.loc[duplicated, "record_id"].iloc[0]
        rows = (new.index[new["record_id"] == record] + 1).tolist()
        raise InputError(MSG_OUTCOME_DUPLICATE.format(source=source, record=record, rows=rows))
    new = new[new[target].notna()]
    stored = read_outcomes(directory, target=target).drop_duplicates("record_id").set_index("record_id")
    joined = new.join(stored, on="record_id", rsuffix="_stored")
    seen = joined[f"{target}_stored"].notna()
    conflict = seen & (joined[f"{target}_stored"] != joined[target])
    if conflict.any():
        row = joined[conflict].iloc[0]
        raise InputError(MSG_OUTCOME_CONFLICT.format(source=source, record=row["record_id"], new=row[target],
                                                     earlier=row["source"], old=row[f"{target}_stored"]))
    fresh = new[~seen.to_numpy()].reset_index(drop=True)
    matched = int(fresh["record_id"].isin(set(known_records)).sum())
    if fresh.empty:
        return OutcomesAdded(path=None, added=0, already_known=int(seen.sum()), matched=0)
    table = pa.Table.from_pandas(fresh, preserve_index=False)
    folder = Path(directory) / OUTCOMES_DIR
    content = "".join(f"{r}\t{v}\n" for r, v in zip(fresh["record_id"], fresh[target])).encode("utf-8")
    target_path = folder / f"{hashlib.sha256(content).hexdigest()[:32]}.parquet"  # same outcomes, same name
    _write_parquet_atomically(table, target_path)
    return OutcomesAdded(path=target_path, added=len(fresh), already_known=int(seen.sum()), matched=matched)


# ---------------------------------------------------------------------------- periods
LIVE_PREFIX = "live-"
"""Files of a folder source that the monitor writes, one per period (``live-<period>.parquet``)."""


@dataclass(frozen=True)
class LivePeriods:
    """Study rows made from sealed predictions, one frame per complete period.

    Attributes
    ----------
    frames : dict
        Period label -> the rows to write as ``live-<period>.parquet``.
    skipped : dict
        Why predictions were left out -> how many.
    """

    frames: Mapping[str, pd.DataFrame]
    skipped: Mapping[str, int]


def period_labels(times: pd.Series, *, rule: str) -> pd.Series:
    """The production period of each UTC prediction time under a study's period rule.

    ``value`` studies number their periods by calendar year (the time column holds the
    year minus ``time.offset``); the date rules use calendar years, quarters or months.
    """
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None)
    if rule == "value":
        return naive.dt.year.astype(str)
    return naive.dt.to_period({"year": "Y", "quarter": "Q", "month": "M"}[rule]).astype(str)


def period_end(label: str, *, rule: str) -> pd.Timestamp:
    """The first UTC instant after a period."""
    freq = {"value": "Y", "year": "Y", "quarter": "Q", "month": "M"}[rule]
    return (pd.Period(label, freq).end_time + pd.Timedelta(1, "ns")).tz_localize("UTC")


def live_periods(
    predictions: pd.DataFrame,
    *,
    outcomes: pd.DataFrame,
    study,
    columns: Sequence[str],
    through: datetime,
    taken: Iterable[str] = (),
) -> LivePeriods:
    """Turn sealed predictions (and the outcomes known so far) into study rows.

    One row per record (the first prediction of a ``record_id``; a prediction without
    one is its own record), in the columns of the study's source, for every period that
    ended by ``through`` and is not ``taken`` by other source files or the reference
    period. Features are the inputs the model scored; the target is the observed
    outcome or missing (the pipeline then gives CBPE estimates for the period); cohort
    columns that are not features get the cohort's first allowed value, since the
    service scores only its intended-use cohort; other columns are left missing.
    """
    schema = study.schema
    skipped: dict[str, int] = {}
    if predictions.empty:
        return LivePeriods(frames={}, skipped=skipped)
    rows = predictions.assign(record=predictions["record_id"].fillna(predictions["prediction_id"]))
    rows = rows.sort_values(["time", "prediction_id"], kind="stable")
    first = ~rows["record"].duplicated(keep="first")
    if (~first).any():
        skipped["repeat predictions of a record (the first is kept)"] = int((~first).sum())
    rows = rows[first.to_numpy()].copy()
    rows["period"] = period_labels(rows["time"], rule=study.period_rule)
    ended = rows["period"].map(lambda p: period_end(p, rule=study.period_rule) <= _utc(through))
    if (~ended).any():
        skipped["in a period not yet over"] = int((~ended).sum())
    reference_labels = _labels_between(study.reference, rule=study.period_rule)
    blocked = rows["period"].isin(set(taken) | set(reference_labels))
    if blocked.any():
        skipped["in a period other source files or the reference already hold"] = int(blocked.sum())
    rows = rows[(ended & ~blocked).to_numpy()]
    labels = outcomes.drop_duplicates("record_id").set_index("record_id")[schema.target] if len(outcomes) else pd.Series(dtype="string")
    frames = {}
    for period, part in rows.groupby("period", sort=True):
        out = pd.DataFrame(index=range(len(part)), columns=list(columns), dtype=object)
        record = part["record"].astype(str).to_numpy()
        if schema.id_column:
            out[schema.id_column] = record
        out[schema.target] = pd.Series(record).map(labels).astype(object).where(lambda s: s.notna(), None).to_numpy()
        for name in schema.features:
            out[name] = part[name].to_numpy()
        for name, allowed in study.cohort.items():
            if name not in schema.features:
                out[name] = allowed[0]
        out[schema.time] = _time_values(part["time"], rule=study.period_rule, offset=study.time_offset)
        frames[str(period)] = out.reset_index(drop=True)
    return LivePeriods(frames=frames, skipped=skipped)


def _labels_between(bounds: tuple[Any, Any], *, rule: str) -> list[str]:
    low, high = bounds
    if rule == "value":
        return [str(v) for v in range(int(float(low)), int(float(high)) + 1)]
    freq = {"year": "Y", "quarter": "Q", "month": "M"}[rule]
    return [str(p) for p in pd.period_range(pd.Period(str(low), freq), pd.Period(str(high), freq), freq=freq)]


def _time_values(times: pd.Series, *, rule: str, offset: float) -> Any:
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None)
    if rule == "value":
        values = naive.dt.year - offset
        return values.astype(int).to_numpy() if float(offset).is_integer() else values.to_numpy()
    return naive.dt.strftime("%Y-%m-%d").to_numpy()
