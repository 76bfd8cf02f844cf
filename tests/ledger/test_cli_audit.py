"""The `clinval audit`, `clinval keys` and `clinval sign` commands, end to end."""

from __future__ import annotations

import json
import shutil

import click
import pytest
from click.testing import CliRunner

from clinval.cli.audit import EXIT_ERROR, EXIT_VERIFY_FAILED, audit, keys, sign
from clinval.signing import private_key_path

PASSPHRASE = "pipeline passphrase"
ALICE_PASSPHRASE = "alice passphrase"


@click.group()
def clinval() -> None:
    """Stand-in for the real `clinval` group, which registers these commands."""


clinval.add_command(audit)
clinval.add_command(keys)
clinval.add_command(sign)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "locked.bin").write_text("model\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "02_drift.json").write_text(
        json.dumps({"alerts": [{"id": "a1", "kind": "drift", "summary": "age shifted"}]})
    )
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: train\n    outs:\n"
        "    - path: models/locked.bin\n      md5: 0123456789abcdef0123456789abcdef\n"
    )
    return tmp_path


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
    result = CliRunner().invoke(clinval, list(args), input=input, env=env)
    assert "Traceback" not in result.output
    return result


def recorded(repo) -> None:
    result = run("audit", "record", "--create-signer", env={"CLINVAL_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output


def with_alice(repo) -> None:
    recorded(repo)
    result = run(
        "keys", "init", "--id", "alice", "--name", "Alice Smith",
        input=f"{ALICE_PASSPHRASE}\n{ALICE_PASSPHRASE}\n",
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "command",
    [
        ["audit"], ["audit", "record"], ["audit", "verify"], ["audit", "show"], ["audit", "recover"],
        ["audit", "witness"], ["keys"], ["keys", "init"], ["keys", "revoke"], ["keys", "list"], ["keys", "unlock"],
        ["sign"],
    ],
)
def test_every_command_explains_itself(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert len(result.output.split()) > 25


def test_verify_help_lists_every_error_code():
    output = run("audit", "verify", "--help").output
    for code in ("PREV_MISMATCH", "TORN_TAIL", "DUPLICATE_SIGNATURE", "BAD_CHECKPOINT"):
        assert code in output


def test_record_needs_a_signer_and_creates_one_only_when_asked(repo):
    missing = run("audit", "record")
    assert missing.exit_code == EXIT_ERROR and "--create-signer" in missing.output
    no_passphrase = run("audit", "record", "--create-signer")
    assert no_passphrase.exit_code == EXIT_ERROR and "CLINVAL_PASSPHRASE" in no_passphrase.output

    first = run("audit", "record", "--create-signer", env={"CLINVAL_PASSPHRASE": PASSPHRASE})

    assert first.exit_code == 0, first.output
    assert "seq 0: key_added" in first.output and "pipeline_run" in first.output
    again = run("audit", "record", env={"CLINVAL_PASSPHRASE": PASSPHRASE})
    assert again.exit_code == 0 and "nothing new to record" in again.output
    assert run("audit", "verify", "--deep").exit_code == 0


def test_sign_asks_for_user_and_passphrase_and_refuses_a_replay(repo):
    with_alice(repo)

    signed = run(
        "sign", "--meaning", "approved", "--target", "2", "--reason", "drift is real",
        input=f"alice\n{ALICE_PASSPHRASE}\n",
    )

    assert signed.exit_code == 0, signed.output
    assert "User id" in signed.output and "APPROVED by Alice Smith (alice, key " in signed.output
    replay = run(
        "sign", "--meaning", "approved", "--target", "2", "--reason", "again",
        input=f"alice\n{ALICE_PASSPHRASE}\n",
    )
    assert replay.exit_code == EXIT_ERROR and "DUPLICATE_SIGNATURE" in replay.output
    wrong = run(
        "sign", "--meaning", "reviewed", "--target", "reports/02_drift.json", "--reason", "read",
        input="alice\nnot her passphrase\n",
    )
    assert wrong.exit_code == EXIT_ERROR and "wrong passphrase" in wrong.output
    by_env = run(
        "sign", "--meaning", "reviewed", "--target", str(repo / "reports" / "02_drift.json"),
        "--reason", "read", env={"CLINVAL_USER": "alice", "CLINVAL_PASSPHRASE": ALICE_PASSPHRASE},
    )
    assert by_env.exit_code == 0, by_env.output
    assert run("audit", "verify", "--deep").exit_code == 0


def test_show_prints_the_trail_and_renders_the_signoff_page(repo):
    with_alice(repo)
    run(
        "sign", "--meaning", "reviewed", "--target", "1", "--reason", "checked <digests> & outputs",
        env={"CLINVAL_USER": "alice", "CLINVAL_PASSPHRASE": ALICE_PASSPHRASE},
    )

    trail = run("audit", "show")
    page = run("audit", "show", "--html", "out/signoff.html")

    assert trail.exit_code == 0 and "REVIEWED by Alice Smith" in trail.output
    esigs = run("audit", "show", "--kind", "esig").output.splitlines()
    assert esigs[0].startswith("ledger: OK: 5 entries verified") and len(esigs) == 2
    assert page.exit_code == 0
    html = (repo / "out" / "signoff.html").read_text()
    assert "Alice Smith" in html and "REVIEWED" in html and "OK:" in html
    assert "checked &lt;digests&gt; &amp; outputs" in html
    assert "http" not in html


def test_verify_reports_code_and_seq_and_exits_1(repo):
    recorded(repo)
    ledger = repo / "audit" / "ledger.jsonl"
    ledger.write_bytes(ledger.read_bytes().replace(b"age shifted", b"age stable!"))

    result = run("audit", "verify")

    assert result.exit_code == EXIT_VERIFY_FAILED
    assert "BAD_SIGNATURE at seq 2:" in result.output


def test_recover_truncates_only_a_torn_tail(repo):
    recorded(repo)
    ledger = repo / "audit" / "ledger.jsonl"
    nothing = run("audit", "recover", "--yes")
    assert nothing.exit_code == 0 and "nothing to recover" in nothing.output
    with open(ledger, "ab") as handle:
        handle.write(b'{"actor":"pipeline","bo')
    assert run("audit", "verify").exit_code == EXIT_VERIFY_FAILED

    result = run(
        "audit", "recover", "--yes", env={"CLINVAL_USER": "pipeline", "CLINVAL_PASSPHRASE": PASSPHRASE}
    )

    assert result.exit_code == 0, result.output
    assert "TORN_TAIL" in result.output and "recovery" in result.output
    assert run("audit", "verify").exit_code == 0


def test_recover_refuses_when_the_damage_is_not_a_torn_tail(repo):
    recorded(repo)
    ledger = repo / "audit" / "ledger.jsonl"
    ledger.write_bytes(ledger.read_bytes().replace(b"age shifted", b"age stable!"))

    result = run("audit", "recover", "--yes", env={"CLINVAL_USER": "pipeline", "CLINVAL_PASSPHRASE": PASSPHRASE})

    assert result.exit_code == EXIT_ERROR and "cannot fix" in result.output


def test_keys_revoke_and_list(repo):
    with_alice(repo)
    alice_key = next(
        line.split()[0] for line in run("keys", "list").output.splitlines() if " alice " in line
    )

    revoked = run(
        "keys", "revoke", alice_key, "--reason", "left the hospital",
        env={"CLINVAL_USER": "pipeline", "CLINVAL_PASSPHRASE": PASSPHRASE},
    )

    assert revoked.exit_code == 0, revoked.output
    listing = run("keys", "list").output
    assert "revoked@" in listing and "genesis" in listing
    refused = run(
        "sign", "--meaning", "approved", "--target", "1", "--reason", "x",
        env={"CLINVAL_USER": "alice", "CLINVAL_PASSPHRASE": ALICE_PASSPHRASE},
    )
    assert refused.exit_code == EXIT_ERROR and "KEY_REVOKED" in refused.output


def test_keys_init_registers_an_existing_local_key_in_another_ledger(repo):
    with_alice(repo)
    other = run(
        "keys", "init", "--id", "alice", "--name", "Alice Smith", "--ledger", "other/ledger.jsonl",
        "--checkpoints", "other/checkpoints", "--keys-dir", "other/keys",
        env={"CLINVAL_PASSPHRASE": ALICE_PASSPHRASE},
    )
    assert other.exit_code == 0, other.output
    assert "seq 0: key_added" in other.output
    again = run("keys", "init", "--id", "alice", "--name", "Alice Smith", env={"CLINVAL_PASSPHRASE": ALICE_PASSPHRASE})
    assert again.exit_code == EXIT_ERROR and "already registered" in again.output


def test_verify_of_a_missing_ledger_is_an_empty_ledger(repo):
    result = run("audit", "verify")
    assert result.exit_code == 0 and "empty" in result.output


def test_missing_passphrase_without_a_terminal_is_a_clear_error(repo):
    recorded(repo)
    result = run("audit", "record")
    assert result.exit_code == EXIT_ERROR and "CLINVAL_PASSPHRASE" in result.output


def test_a_new_key_for_an_existing_user_needs_an_endorsement(repo):
    with_alice(repo)
    old_key = private_key_path("alice")
    old_key.rename(old_key.with_name("alice.old-laptop.json"))
    new_laptop = {"CLINVAL_PASSPHRASE": "new laptop passphrase"}

    refused = run("keys", "init", "--id", "alice", "--name", "Alice Smith", env=new_laptop)
    assert refused.exit_code == EXIT_ERROR and "UNAUTHORIZED" in refused.output

    endorsed = run(
        "keys", "init", "--id", "alice", "--name", "Alice Smith", "--endorse-by", "pipeline",
        env=new_laptop, input=f"{PASSPHRASE}\n",
    )
    assert endorsed.exit_code == 0, endorsed.output
    assert "endorsed by key" in endorsed.output
    assert run("audit", "verify").exit_code == 0


def test_a_witness_pins_the_ledger_and_verify_trust_catches_a_rebuilt_one(repo):
    from clinval.signing import create_key

    with_alice(repo)
    create_key(user_id="qa", printed_name="QA Witness", passphrase="qa passphrase")  # never registered
    qa = {"CLINVAL_USER": "qa", "CLINVAL_PASSPHRASE": "qa passphrase"}
    trust = repo / "off-system" / "trust.json"

    witnessed = run("audit", "witness", "--trust", str(trust), env=qa)

    assert witnessed.exit_code == 0, witnessed.output
    assert "witnessed by QA Witness (qa, key " in witnessed.output and trust.exists()
    pinned = run("audit", "verify", "--trust", str(trust))
    assert pinned.exit_code == 0 and "1 pinned head(s) hold" in pinned.output
    again = run("audit", "witness", "--trust", str(trust), env=qa)  # the same head: one more cosignature
    assert again.exit_code == 0 and "1 pinned head(s)" in again.output
    by_genesis = run("audit", "witness", "--trust", str(trust),
                     env={"CLINVAL_USER": "pipeline", "CLINVAL_PASSPHRASE": PASSPHRASE})
    assert by_genesis.exit_code == EXIT_ERROR and "genesis key" in by_genesis.output

    # an insider rebuilds the ledger from scratch with a fresh genesis key
    for path in (repo / "audit").iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    private_key_path("pipeline").unlink()
    recorded(repo)
    assert run("audit", "verify").exit_code == 0, "alone, the rebuilt ledger verifies"
    caught = run("audit", "verify", "--trust", str(trust))
    assert caught.exit_code == EXIT_VERIFY_FAILED and "UNTRUSTED_ROOT at seq 0" in caught.output
    refused = run("audit", "witness", "--trust", str(trust), env=qa)
    assert refused.exit_code == EXIT_ERROR and "UNTRUSTED_ROOT" in refused.output


def test_keys_unlock_by_the_administrator_records_the_attempts(repo):
    with_alice(repo)
    for _ in range(5):
        wrong = run("sign", "--meaning", "reviewed", "--target", "1", "--reason", "x",
                    env={"CLINVAL_USER": "alice", "CLINVAL_PASSPHRASE": "not her passphrase"})
    assert wrong.exit_code == EXIT_ERROR and "LOCKED_OUT" in wrong.output
    by_alice = run("keys", "unlock", "alice", "--reason", "x",
                   env={"CLINVAL_USER": "alice", "CLINVAL_PASSPHRASE": ALICE_PASSPHRASE})
    assert by_alice.exit_code == EXIT_ERROR and "LOCKED_OUT" in by_alice.output

    unlocked = run("keys", "unlock", "alice", "--reason", "identity confirmed by phone",
                   env={"CLINVAL_USER": "pipeline", "CLINVAL_PASSPHRASE": PASSPHRASE})

    assert unlocked.exit_code == 0, unlocked.output
    assert "access_failure: 6 failed sign-in attempt(s) for alice" in unlocked.output
    signed = run("sign", "--meaning", "reviewed", "--target", "1", "--reason", "x",
                 env={"CLINVAL_USER": "alice", "CLINVAL_PASSPHRASE": ALICE_PASSPHRASE})
    assert signed.exit_code == 0, signed.output
    trail = run("audit", "show", "--kind", "access_failure").output
    assert "unlocked by pipeline: identity confirmed by phone" in trail
    assert run("audit", "verify").exit_code == 0
