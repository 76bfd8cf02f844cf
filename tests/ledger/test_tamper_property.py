"""Property: changing any single byte of a ledger makes verification fail."""

from __future__ import annotations

import pytest
from ledger_harness import build_standard_ledger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinval.ledger import verify


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    standard = build_standard_ledger(tmp_path_factory.mktemp("repo"))
    return standard.path.read_bytes()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_single_byte_change_fails_verification(pristine, tmp_path_factory, data):
    position = data.draw(st.integers(min_value=0, max_value=len(pristine) - 1), label="position")
    replacement = data.draw(
        st.integers(min_value=0, max_value=255).filter(lambda byte: byte != pristine[position]),
        label="new byte",
    )
    tampered = bytearray(pristine)
    tampered[position] = replacement
    path = tmp_path_factory.mktemp("tampered") / "ledger.jsonl"
    path.write_bytes(bytes(tampered))

    result = verify(path, workers=1)

    assert not result.ok, f"byte {position} -> {replacement:#04x} went unnoticed"
    assert result.code is not None and result.message


def test_pristine_copy_verifies(pristine, tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(pristine)
    assert verify(path).ok
