"""Canonical JSON: the fast check agrees with the rfc8785 package, byte for byte."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from clinval.ledger._encoding import MAX_DEPTH, MAX_LINE_BYTES, MAX_SAFE_INTEGER, NotCanonical, parse_canonical

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


def _beyond_safe_integers(line: bytes) -> bool:
    """Whether a line spells an integer outside the range the writer (rfc8785) accepts.

    rfc8785 writes a float such as 2.0**53 as "9007199254740992"; read back, that is an
    integer the writer itself refuses, so the ledger refuses the line on both sides.
    """
    found = []
    json.loads(line, parse_int=lambda text: found.append(abs(int(text)) > MAX_SAFE_INTEGER) or 0)
    return any(found)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_rfc8785_output_is_accepted_within_the_integer_range(value):
    line = rfc8785.dumps(value)
    if _beyond_safe_integers(line):
        with pytest.raises(NotCanonical):
            parse_canonical(line)
    else:
        assert rfc8785.dumps(parse_canonical(line)) == line


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_python_spellings_are_accepted_only_when_identical_to_rfc8785(value):
    for line in (
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        ),
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(value).encode(),
    ):
        try:
            canonical = rfc8785.dumps(value)
        except rfc8785.CanonicalizationError:
            canonical = None
        if line == canonical and not _beyond_safe_integers(line):
            assert parse_canonical(line) == json.loads(line)
        else:
            with pytest.raises(NotCanonical):
                parse_canonical(line)


@pytest.mark.parametrize(
    "line",
    [
        b'{"a":1, "b":2}',  # whitespace
        b'{"b":1,"a":2}',  # key order
        b'{"a":1,"a":1}',  # duplicate member
        b'{"a":1.0}',  # number spelling
        b'{"a":-0}',
        b'{"a":"\\u0041"}',  # needless escape
        b'{"a":"\\u00e9"}',  # escaped non-ASCII
        b'{"a":"\xff"}',  # not UTF-8
        b'{"a":NaN}',
        b'{"a":12345678901234567890}',  # beyond IEEE double integers
        b'{"a":9007199254740992}',  # 2**53: no exact RFC 8785 integer, the writer refuses it
        b"[" * 200_000 + b"]" * 200_000,  # deeper than Python's JSON parser can recurse
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),  # deeper than the writer allows
        b'{"a":"' + b"x" * MAX_LINE_BYTES + b'"}',  # longer than the writer allows
        b'{"a":"\\ud800"}',  # lone surrogate
        b'{"a":1}\n',
        b"",
    ],
)
def test_non_canonical_spellings_are_rejected(line):
    with pytest.raises(NotCanonical):
        parse_canonical(line)


def test_the_limits_are_exactly_where_the_writer_puts_them():
    deepest = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert parse_canonical(deepest) is not None
    longest = b'"' + b"x" * (MAX_LINE_BYTES - 3) + b'"'
    assert len(longest) + 1 == MAX_LINE_BYTES and parse_canonical(longest)
    assert parse_canonical(str(MAX_SAFE_INTEGER).encode()) == MAX_SAFE_INTEGER
    assert parse_canonical(str(-MAX_SAFE_INTEGER).encode()) == -MAX_SAFE_INTEGER
