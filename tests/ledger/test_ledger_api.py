"""The `Ledger` object: reading, finding, checkpoints, exported keys, recovery limits."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from clinval.ledger import (
    ERROR_CODES,
    ErrorCode,
    LedgerError,
    read_checkpoint,
    verify,
)


def test_entries_find_and_len(standard):
    entries = list(standard.ledger.entries())

    assert [entry.seq for entry in entries] == list(range(10)) == list(range(len(standard.ledger)))
    assert entries[4].digest == entries[5].prev
    assert [e.seq for e in standard.ledger.find(kind="esig")] == [6, 9]
    assert [e.seq for e in standard.ledger.find(kind="esig", meaning="approved")] == [6]
    assert [e.seq for e in standard.ledger.find(alert_id="a1")] == [4, 5]
    assert standard.ledger.find(kind="retrain", candidate_id="nope") == []


def test_readers_skip_an_incomplete_last_line(standard):
    with open(standard.path, "ab") as handle:
        handle.write(b'{"actor":"pipe')

    assert len(list(standard.ledger.entries())) == 10
    assert len(standard.ledger) == 10


def test_every_append_leaves_a_signed_checkpoint_of_the_new_head(standard):
    checkpoint = read_checkpoint(standard.checkpoint)
    entries = list(standard.ledger.entries())

    assert (checkpoint.size, checkpoint.head) == (10, entries[-1].digest)
    assert (checkpoint.signer, checkpoint.key) == ("alice", standard.signers["alice"].key_id)


def test_registered_public_keys_are_exported_and_usable(standard):
    for name in ("pipeline", "alice", "bob"):
        signer = standard.signers[name]
        exported = json.loads((standard.root / "audit" / "keys" / f"{signer.key_id}.json").read_text())
        public_key = load_pem_public_key(exported["public_key_pem"].encode())
        public_key.verify(signer.sign(b"probe"), b"probe")
        assert (exported["user_id"], exported["printed_name"]) == (name, signer.printed_name)


def test_registered_keys_report_revocation(standard):
    keys = {key.user_id: key for key in standard.ledger.registered_keys()}

    assert keys["bob"].revoked_seq == 7 and not keys["bob"].active_at(8)
    assert keys["alice"].revoked_seq is None and keys["alice"].active_at(10)


def test_recover_refuses_when_the_checkpoint_vouches_for_the_torn_line(standard):
    data = standard.path.read_bytes()
    standard.path.write_bytes(data[:-1])  # drop the last newline: looks torn

    with pytest.raises(LedgerError) as refused:
        standard.ledger.recover(signer=standard.signers["pipeline"], reason="crash?")

    assert refused.value.code == ErrorCode.TRUNCATED
    assert standard.path.read_bytes() == data[:-1]


def test_appends_refuse_to_extend_a_damaged_ledger(standard):
    lines = standard.lines()
    lines[3] = lines[3].replace(b'"seq":3', b'"seq":33')
    standard.path.write_bytes(b"".join(line + b"\n" for line in lines))
    fresh = type(standard.ledger)(path=standard.path)

    with pytest.raises(LedgerError) as refused:
        fresh.append(kind="model_version", body={}, signer=standard.signers["pipeline"])

    assert (refused.value.code, refused.value.seq) == (ErrorCode.SEQ_GAP, 3)


def test_a_ledger_rewritten_under_a_live_writer_is_noticed(standard):
    lines = standard.lines()
    lines[-1] = lines[-1].replace(b"read the drift record", b"read the drift RECORD")
    standard.path.write_bytes(b"".join(line + b"\n" for line in lines))

    with pytest.raises(LedgerError) as refused:
        standard.ledger.append(kind="model_version", body={}, signer=standard.signers["pipeline"])

    assert refused.value.code == ErrorCode.INCONSISTENT


def test_error_codes_are_documented_once_each():
    assert len(ERROR_CODES) == len(set(ERROR_CODES)) == 16
    assert all(meaning and len(meaning) < 100 for meaning in ERROR_CODES.values())


def test_verify_result_reads_like_the_cli(standard):
    ok = verify(standard.path)
    assert str(ok).startswith("OK: 10 entries verified")
    assert (ok.size, ok.head) == (10, list(standard.ledger.entries())[-1].digest)
    with pytest.raises(ValueError, match="needs root"):
        verify(standard.path, deep=True)


def test_deep_verify_skips_replaced_outputs_but_requires_current_and_promoted_ones(tmp_path):
    """DVC replaces a run's outputs on the next run, so an older run's artifact may be
    absent; the latest run's outputs and a promoted model must be present and match."""
    from clinval.ledger import Ledger, path_sha256, register_key, verify
    from clinval.signing import Signer

    def write(name: str, text: str) -> dict:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return {"path": name, "sha256": path_sha256(path)}

    ledger = Ledger(path=tmp_path / "audit" / "ledger.jsonl")
    pipeline = Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")
    register_key(ledger, signer=pipeline, role="machine")
    bob = Signer.ephemeral(user_id="bob", printed_name="Bob Jones")
    register_key(ledger, signer=bob)
    ledger.append(kind="pipeline_run", body={"outputs": [write("reports/old.html", "run 1")]}, signer=pipeline)
    ledger.append(kind="retrain", body={"candidate_id": "c1", "model_file": write("models/c1.bin", "c1")}, signer=pipeline)
    ledger.append(kind="retrain", body={"candidate_id": "c2", "model_file": write("models/c2.bin", "c2")}, signer=pipeline)
    ledger.append(kind="model_version", body={"candidate_id": "c2", "model_file": write("models/c2.bin", "c2")}, signer=bob)
    ledger.append(kind="pipeline_run", body={"outputs": [write("reports/new.html", "run 2")]}, signer=pipeline)

    (tmp_path / "reports" / "old.html").unlink()   # replaced by run 2
    (tmp_path / "models" / "c1.bin").unlink()      # an unpromoted candidate, replaced
    assert verify(ledger.path, deep=True, root=tmp_path).ok

    (tmp_path / "reports" / "new.html").unlink()   # the current run's output
    result = verify(ledger.path, deep=True, root=tmp_path)
    assert not result.ok and result.code == "DIGEST_MISMATCH" and "reports/new.html" in result.message
    write("reports/new.html", "run 2")

    (tmp_path / "models" / "c2.bin").unlink()      # the promoted model
    result = verify(ledger.path, deep=True, root=tmp_path)
    assert not result.ok and result.code == "DIGEST_MISMATCH" and "models/c2.bin" in result.message


def test_readers_of_a_missing_ledger_leave_nothing_behind(tmp_path):
    from clinval.ledger import Ledger

    ledger = Ledger(path=tmp_path / "audit" / "ledger.jsonl", checkpoint_dir=tmp_path / "audit" / "checkpoints")
    assert (list(ledger.entries()), ledger.registered_keys(), len(ledger)) == ([], [], 0)
    assert verify(ledger.path).ok and not (tmp_path / "audit").exists()


def test_check_excerpt_applies_every_rule_lines_can_show_alone(standard):
    from clinval.ledger import ErrorCode, LedgerError, check_excerpt
    from clinval.ledger._entry import seal

    lines = standard.lines()
    excerpt = check_excerpt([lines[0], lines[4], lines[1], lines[6]])  # any order
    assert sorted(excerpt.entries) == [0, 1, 4, 6]
    assert excerpt.signer(excerpt.entries[6]).user_id == "alice" and excerpt.keys[standard.signers["pipeline"].key_id].role == "machine"

    def refused(candidate_lines) -> tuple:
        with pytest.raises(LedgerError) as error:
            check_excerpt(candidate_lines)
        return error.value.code, error.value.seq

    assert refused([lines[0], lines[4], lines[6]]) == (ErrorCode.UNKNOWN_KEY, 6)  # alice's key line is missing
    edited = lines[6].replace(b"drift confirmed", b"drift rejected!")
    assert refused([lines[0], lines[4], lines[1], edited]) == (ErrorCode.BAD_SIGNATURE, 6)
    other_alert = lines[4].replace(b'"period":"1990"', b'"period":"1991"')
    assert refused([lines[0], other_alert, lines[1], lines[6]])[0] == ErrorCode.BAD_SIGNATURE
    pipeline = standard.signers["pipeline"]
    machine_esig = json.loads(lines[6])
    machine_esig.update(actor="pipeline", key=pipeline.key_id)
    machine_esig["body"]["printed_name"] = pipeline.printed_name
    machine_esig.pop("sig")
    assert refused([lines[0], lines[4], seal(machine_esig, pipeline.sign)]) == (ErrorCode.UNAUTHORIZED, 6)
    assert refused([b"[" * 100_000 + b"]" * 100_000])[0] == ErrorCode.NOT_CANONICAL


def test_a_trust_root_typed_from_a_report_pins_genesis_and_head(standard, tmp_path):
    pinned = verify(standard.path)
    trust = tmp_path / "from-the-report.json"
    root = {"format": "clinval-trust-root-v1", "genesis_key": pinned.genesis_key,
            "heads": [{"size": 6, "head": standard.ledger.find()[5].digest}]}
    trust.write_text(json.dumps(root, indent=4))  # typed by hand: any JSON spelling
    assert verify(standard.path, trust=trust).ok
    root["heads"][0]["head"] = standard.ledger.find()[4].digest
    trust.write_text(json.dumps(root))
    result = verify(standard.path, trust=trust)
    assert (result.code, result.seq) == (ErrorCode.INCONSISTENT, 5)
    trust.write_text("{not json")
    assert verify(standard.path, trust=trust).code == ErrorCode.BAD_CHECKPOINT
