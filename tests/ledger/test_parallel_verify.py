"""Signature checks split across processes find exactly what one process finds."""

from __future__ import annotations

import json

import pytest
from _ledger_attacks import raw_append

from clinval.ledger import ErrorCode, Ledger, register_key, verify
from clinval.ledger._encoding import canonical
from clinval.ledger._entry import seal
from clinval.signing import Signer


@pytest.fixture(scope="module")
def long_ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "ledger.jsonl"
    signer = Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")
    register_key(Ledger(path=path), signer=signer, role="machine")
    for n in range(299):
        raw_append(path, signer, "pipeline_run", {"n": n})
    return path


def test_parallel_and_serial_verification_agree_on_a_good_ledger(long_ledger):
    assert verify(long_ledger, workers=1).ok
    assert verify(long_ledger, workers=2).ok


@pytest.mark.parametrize("bad_seq", [3, 160, 299])
def test_a_forged_signature_anywhere_is_found_by_every_worker_layout(long_ledger, tmp_path, bad_seq):
    lines = long_ledger.read_bytes().split(b"\n")[:-1]
    value = json.loads(lines[bad_seq])
    value.pop("sig")
    forger = Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")
    lines[bad_seq] = seal({**value, "body": {"n": -1}}, forger.sign)
    assert canonical(json.loads(lines[bad_seq])) == lines[bad_seq]
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))

    for workers in (1, 2, 3):
        result = verify(path, workers=workers)
        assert (result.code, result.seq) == (ErrorCode.BAD_SIGNATURE, bad_seq), (workers, str(result))


@pytest.mark.parametrize("entries", [0, 1, 5, 300, 100_000])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_signature_chunks_cover_every_line_once_with_a_smaller_share_for_the_chain_walker(entries, count):
    from clinval.ledger._verify import _chunk_bounds

    bounds = _chunk_bounds(entries, count)
    assert len(bounds) == count + 1 and bounds[0] == 0 and bounds[-1] == entries
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))
    if count > 1 and entries >= 300:
        assert bounds[1] < entries / count
