"""Bytes on disk: RFC 8785 canonical JSON, SHA-256 digests, UTC time stamps, base64."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import rfc8785

from clinval._io import sha256_path as path_sha256

__all__ = [
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_SAFE_INTEGER",
    "NotCanonical",
    "b64decode_exact",
    "b64encode",
    "canonical",
    "check_relative_path",
    "key_fingerprint",
    "parse_canonical",
    "path_sha256",
    "sha256_hex",
    "utc_now",
]

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
TIME_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
HEX64 = re.compile(r"[0-9a-f]{64}")

# Integers beyond 2**53 have no exact RFC 8785 (IEEE double) form; 15 digits is safe.
_FAST_PATH_MAX_INT_DIGITS = 15

MAX_LINE_BYTES = 1 << 20
"""Longest stored line, newline included; the writer and the verifier both refuse more."""
MAX_DEPTH = 32
"""Deepest nesting of objects and arrays in a stored line (an entry needs about 6)."""
MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude RFC 8785 can write exactly (an IEEE double's integer range)."""

MSG_TOO_LONG = "line is {size} bytes with its newline; the limit is {limit}"
MSG_TOO_DEEP = "nesting is deeper than {limit} levels"
MSG_BIG_INTEGER = "integer {text} is outside the exact range of RFC 8785 (|n| <= 2**53 - 1)"


class NotCanonical(ValueError):
    """A stored line is not exactly the RFC 8785 serialisation of its parsed value."""


class _SlowPath(Exception):
    """The fast canonical check cannot decide this line; use the rfc8785 package."""


def _reject_constant(name: str) -> Any:
    raise NotCanonical(f"JSON constant {name} is not allowed")


def _flag_float(text: str) -> Any:
    raise _SlowPath


def _checked_int(text: str) -> int:
    if len(text) > _FAST_PATH_MAX_INT_DIGITS:
        raise _SlowPath
    return int(text)


_FAST_DECODER = json.JSONDecoder(
    parse_float=_flag_float, parse_int=_checked_int, parse_constant=_reject_constant
)
def _exact_int(text: str) -> int:
    # The writer (rfc8785) refuses integers outside the exact double range: so does this.
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise NotCanonical(MSG_BIG_INTEGER.format(text=text[:40]))
    return value


_PLAIN_DECODER = json.JSONDecoder(parse_int=_exact_int, parse_constant=_reject_constant)


def canonical(value: Any) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``value``."""
    return rfc8785.dumps(value)


def parse_canonical(line: bytes) -> Any:
    """Parse ``line`` and check that it is exactly its own canonical serialisation.

    Verification works on stored bytes: the caller hashes and signs-checks ``line``
    itself, and this check guarantees no other byte string could parse to the same
    value and pass.

    The same limits bind the writer, which parses every line it is about to store with
    this function: at most :data:`MAX_LINE_BYTES` with the newline, nesting at most
    :data:`MAX_DEPTH`, integers within :data:`MAX_SAFE_INTEGER`.

    Raises
    ------
    NotCanonical
        If ``line`` is not UTF-8, not JSON, not byte-identical to its RFC 8785 form, or
        beyond the limits.
    """
    if len(line) + 1 > MAX_LINE_BYTES:
        raise NotCanonical(MSG_TOO_LONG.format(size=len(line) + 1, limit=MAX_LINE_BYTES))
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotCanonical(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value, expected = _parse_and_serialise(text, ascii_only=line.isascii())
    except json.JSONDecodeError as exc:
        raise NotCanonical(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise NotCanonical(MSG_TOO_DEEP.format(limit=MAX_DEPTH)) from None
    except (UnicodeEncodeError, rfc8785.CanonicalizationError) as exc:
        raise NotCanonical(f"value has no canonical form ({exc})") from None
    if expected != line:
        raise NotCanonical("bytes differ from the RFC 8785 serialisation of the value")
    # Fewer brackets than the limit cannot nest deeper than it: skip the walk.
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise NotCanonical(MSG_TOO_DEEP.format(limit=MAX_DEPTH))
    return value


def _parse_and_serialise(text: str, *, ascii_only: bool) -> tuple[Any, bytes]:
    """Return the parsed value of ``text`` and its RFC 8785 bytes."""
    try:
        value = _FAST_DECODER.decode(text)
    except _SlowPath:
        value = _PLAIN_DECODER.decode(text)
        return value, rfc8785.dumps(value)
    if ascii_only:
        # Fast path: for ASCII lines without floats or huge integers, Python's sorted
        # compact dump is byte-identical to RFC 8785 (tests/ledger check this claim); a
        # \u escape in the line then differs from the raw character RFC 8785 writes.
        dumped = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return value, dumped.encode("utf-8")
    return value, rfc8785.dumps(value)


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in item)
    return deepest


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def utc_now() -> str:
    """Return the current UTC time as ISO-8601 with microseconds and ``Z``."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def is_utc_time(text: str) -> bool:
    """Return whether ``text`` is a valid time stamp in the ledger's one format."""
    if not TIME_PATTERN.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text[:-1])
    except ValueError:
        return False
    return True


def b64encode(data: bytes) -> str:
    """Return standard padded base64 of ``data`` as text."""
    return base64.b64encode(data).decode("ascii")


def b64decode_exact(text: Any, length: int | None = None) -> bytes | None:
    """Decode canonical standard base64, or return None if ``text`` is not exactly that.

    Canonical means re-encoding the bytes gives ``text`` back, so one value has one
    spelling (no ignored padding bits, no whitespace).
    """
    if not isinstance(text, str) or not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    if length is not None and len(raw) != length:
        return None
    return raw


def key_fingerprint(public_key: bytes) -> str:
    """Return a key id: the first 32 hex digits of SHA-256 over the raw 32-byte key."""
    return hashlib.sha256(public_key).hexdigest()[:32]


def check_relative_path(path: Any) -> str | None:
    """Return a problem with ``path`` as an artifact path, or None if it is acceptable.

    Artifact paths are relative POSIX paths that stay inside the repository root, so a
    deep verification never reads outside it.
    """
    if not isinstance(path, str) or not path:
        return "path must be a non-empty string"
    pure = PurePosixPath(path)
    if pure.is_absolute() or "\\" in path or ".." in pure.parts or path != pure.as_posix():
        return f"path {path!r} is not a normalised relative POSIX path inside the root"
    return None
