"""Keys (passphrase-protected, outside the repo) and electronic signatures."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest

from clinval.ledger import ErrorCode, Ledger, LedgerError, register_key, revoke_key, verify
from clinval.ledger._encoding import b64encode
from clinval.signing import (
    Signer,
    SigningError,
    create_key,
    digest_of_target,
    esign,
    key_store_dir,
    load_signer,
    private_key_path,
)

PASSPHRASE = "correct horse battery"


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(path=tmp_path / "audit" / "ledger.jsonl", checkpoint_dir=tmp_path / "audit" / "cp")


@pytest.fixture
def people(ledger):
    signers = {
        name: Signer.ephemeral(user_id=name, printed_name=name.title() + " Example")
        for name in ("pipeline", "alice", "bob")
    }
    for signer in signers.values():
        register_key(ledger, signer=signer, role="machine" if signer.user_id == "pipeline" else "person")
    return signers


# -- key store -----------------------------------------------------------------------
def test_key_store_is_clinval_home_never_the_real_home(isolated_key_store, tmp_path):
    assert key_store_dir() == isolated_key_store / "keys"
    assert key_store_dir(tmp_path) == tmp_path / "keys"


def test_created_key_is_encrypted_private_and_loads_back(isolated_key_store):
    created = create_key(user_id="alice", printed_name="Alice Smith", passphrase=PASSPHRASE)
    path = private_key_path("alice")

    text = path.read_text()
    raw_private = b64encode(created._private_key.private_bytes_raw())
    assert raw_private not in text and "PRIVATE KEY" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = load_signer("alice", passphrase=PASSPHRASE)
    assert (loaded.key_id, loaded.printed_name) == (created.key_id, "Alice Smith")
    assert loaded.sign(b"m") == created.sign(b"m")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user_id": "../etc", "printed_name": "X", "passphrase": PASSPHRASE}, "not valid"),
        ({"user_id": "alice", "printed_name": " ", "passphrase": PASSPHRASE}, "printed name"),
        ({"user_id": "alice", "printed_name": "Alice", "passphrase": "short"}, "at least 8"),
    ],
)
def test_invalid_key_requests_are_refused(kwargs, match):
    with pytest.raises(SigningError, match=match):
        create_key(**kwargs)


def test_existing_key_is_never_overwritten():
    create_key(user_id="alice", printed_name="Alice", passphrase=PASSPHRASE)
    with pytest.raises(SigningError, match="already exists"):
        create_key(user_id="alice", printed_name="Alice", passphrase=PASSPHRASE)


def test_wrong_passphrase_and_missing_key_are_clear():
    create_key(user_id="alice", printed_name="Alice", passphrase=PASSPHRASE)
    with pytest.raises(SigningError, match="wrong passphrase"):
        load_signer("alice", passphrase="not the passphrase")
    with pytest.raises(SigningError, match="no private key for 'bob'"):
        load_signer("bob", passphrase=PASSPHRASE)


def test_edited_key_file_metadata_is_detected():
    create_key(user_id="alice", printed_name="Alice", passphrase=PASSPHRASE)
    path = private_key_path("alice")
    record = json.loads(path.read_text())
    record["printed_name"] = "Someone Else"
    path.write_text(json.dumps(record))

    with pytest.raises(SigningError, match="wrong passphrase .* altered"):
        load_signer("alice", passphrase=PASSPHRASE)


# -- e-signatures ----------------------------------------------------------------------
def test_signature_records_name_time_meaning_and_digest(ledger, people):
    run = ledger.append(kind="pipeline_run", body={"n": 1}, signer=people["pipeline"])

    entry = esign(
        ledger,
        signer=people["alice"],
        target_ref=str(run.seq),
        target_digest=digest_of_target(ledger, f"seq:{run.seq}"),
        meaning="approved",
        reason="reviewed the run",
    )

    assert entry.body == {
        "meaning": "approved",
        "printed_name": "Alice Example",
        "reason": "reviewed the run",
        "target": {"seq": run.seq, "sha256": run.digest},
    }
    assert entry.time.endswith("Z") and entry.actor == "alice"
    assert verify(ledger.path).ok


def test_signature_cannot_name_another_records_digest(ledger, people):
    first = ledger.append(kind="pipeline_run", body={"n": 1}, signer=people["pipeline"])
    second = ledger.append(kind="pipeline_run", body={"n": 2}, signer=people["pipeline"])

    with pytest.raises(LedgerError) as refused:
        esign(
            ledger,
            signer=people["alice"],
            target_ref=str(first.seq),
            target_digest=second.digest,
            meaning="approved",
            reason="moved",
        )
    assert refused.value.code == ErrorCode.DIGEST_MISMATCH


def test_replayed_approval_is_refused_but_other_meanings_are_not(ledger, people, tmp_path):
    report = tmp_path / "report.html"
    report.write_text("<p>record</p>")
    digest = digest_of_target(ledger, "report.html", root=tmp_path)
    sign = dict(ledger=ledger, target_ref="report.html", target_digest=digest, reason="ok")

    esign(signer=people["alice"], meaning="approved", **sign)
    with pytest.raises(LedgerError) as replay:
        esign(signer=people["alice"], meaning="approved", **sign)
    assert replay.value.code == ErrorCode.DUPLICATE_SIGNATURE
    esign(signer=people["alice"], meaning="reviewed", **sign)
    esign(signer=people["bob"], meaning="approved", **sign)
    assert verify(ledger.path, deep=True, root=tmp_path).ok


def test_directory_targets_and_bad_targets(ledger, people, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.bin").write_text("a")
    assert len(digest_of_target(ledger, "models", root=tmp_path)) == 64
    with pytest.raises(SigningError, match="does not exist"):
        digest_of_target(ledger, "missing.html", root=tmp_path)
    with pytest.raises(SigningError, match="no entry with seq 99"):
        digest_of_target(ledger, "99", root=tmp_path)
    with pytest.raises(SigningError, match="inside the root"):
        digest_of_target(ledger, "../outside", root=tmp_path)
    with pytest.raises(SigningError, match="pass root"):
        digest_of_target(ledger, "models")
    with pytest.raises(SigningError, match="meaning must be one of"):
        esign(ledger, signer=people["alice"], target_ref="0", target_digest="0" * 64, meaning="ok", reason="r")


def test_unregistered_and_revoked_keys_cannot_sign(ledger, people):
    stranger = Signer.ephemeral(user_id="carol", printed_name="Carol")
    with pytest.raises(LedgerError) as unknown:
        ledger.append(kind="model_version", body={}, signer=stranger)
    assert unknown.value.code == ErrorCode.UNKNOWN_KEY

    revoke_key(ledger, key_id=people["bob"].key_id, reason="lost laptop", signer=people["bob"])
    with pytest.raises(LedgerError) as revoked:
        ledger.append(kind="model_version", body={}, signer=people["bob"])
    assert revoked.value.code == ErrorCode.KEY_REVOKED


def test_only_the_key_itself_or_the_genesis_key_may_revoke(ledger, people):
    with pytest.raises(LedgerError) as refused:
        revoke_key(ledger, key_id=people["bob"].key_id, reason="x", signer=people["alice"])
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    revoke_key(ledger, key_id=people["bob"].key_id, reason="left", signer=people["pipeline"])
    assert verify(ledger.path).ok


def test_a_users_further_key_needs_an_endorsement(ledger, people):
    laptop = Signer.ephemeral(user_id="alice", printed_name="Alice Example")
    with pytest.raises(LedgerError) as refused:
        register_key(ledger, signer=laptop)
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    with pytest.raises(LedgerError):
        register_key(ledger, signer=laptop, endorser=people["bob"])

    register_key(ledger, signer=laptop, endorser=people["alice"])

    keys = {key.key_id: key for key in ledger.registered_keys()}
    assert keys[laptop.key_id].endorsed_by == people["alice"].key_id
    assert verify(ledger.path).ok


def test_a_signer_must_hold_the_key_it_claims(ledger, people):
    impostor = dataclasses.replace(
        Signer.ephemeral(user_id="alice", printed_name="Alice Example"),
        key_id=people["alice"].key_id,
        public_key=people["alice"].public_key,
    )
    with pytest.raises(LedgerError) as refused:
        ledger.append(kind="model_version", body={}, signer=impostor)
    assert refused.value.code == ErrorCode.BAD_SIGNATURE
    assert verify(ledger.path).ok


def test_bodies_that_cannot_be_stored_exactly_are_refused(ledger, people):
    for body in ({"x": float("nan")}, {"x": 2**60}, {"ref": {"path": "/etc/passwd", "sha256": None}}):
        with pytest.raises(LedgerError) as refused:
            ledger.append(kind="model_version", body=body, signer=people["pipeline"])
        assert refused.value.code == ErrorCode.MALFORMED
    with pytest.raises(LedgerError):
        ledger.append(kind="not_a_kind", body={}, signer=people["pipeline"])


def test_non_ascii_names_and_reasons_are_stored_and_verified(ledger, people):
    nunez = Signer.ephemeral(user_id="jnunez", printed_name="José Núñez-Øster")
    register_key(ledger, signer=nunez)
    esign(
        ledger,
        signer=nunez,
        target_ref="0",
        target_digest=digest_of_target(ledger, "0"),
        meaning="reviewed",
        reason="geprüft — 确认",
    )
    assert "José Núñez-Øster".encode() in ledger.path.read_bytes()
    assert verify(ledger.path).ok


# -- attempted use (21 CFR 11.300(d)) --------------------------------------------------
def _at(monkeypatch, moment):
    """Let the key store's clock say ``moment`` (the lockout rules are about time)."""
    import clinval.signing as signing

    monkeypatch.setattr(signing, "_now", lambda: moment)


def test_five_wrong_passphrases_lock_the_user_id_until_a_stated_time(monkeypatch):
    from datetime import UTC, datetime, timedelta

    from clinval.signing import LOCKED_OUT, LOCKOUT, MAX_FAILURES, access_state

    create_key(user_id="alice", printed_name="Alice Smith", passphrase=PASSPHRASE)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for minute in range(MAX_FAILURES - 1):
        _at(monkeypatch, start + timedelta(minutes=minute))
        with pytest.raises(SigningError) as wrong:
            load_signer("alice", passphrase="guess")
        assert wrong.value.code is None and f"{minute + 1} of {MAX_FAILURES}" in str(wrong.value)
    _at(monkeypatch, start + timedelta(minutes=MAX_FAILURES - 1))
    with pytest.raises(SigningError) as locked:
        load_signer("alice", passphrase="guess")
    until = start + timedelta(minutes=MAX_FAILURES - 1) + LOCKOUT
    assert locked.value.code == LOCKED_OUT and until.strftime("%Y-%m-%dT%H:%M") in str(locked.value)

    _at(monkeypatch, until - timedelta(seconds=1))
    with pytest.raises(SigningError) as refused:
        load_signer("alice", passphrase=PASSPHRASE)  # the right passphrase does not open a locked user id
    assert refused.value.code == LOCKED_OUT
    _at(monkeypatch, until)
    assert load_signer("alice", passphrase=PASSPHRASE).user_id == "alice"
    outcomes = [outcome for _, outcome in access_state("alice").attempts]
    assert outcomes == ["wrong passphrase"] * MAX_FAILURES + ["refused while locked"]


def test_wrong_passphrases_spread_beyond_the_window_do_not_lock(monkeypatch):
    from datetime import UTC, datetime, timedelta

    from clinval.signing import FAILURE_WINDOW, MAX_FAILURES

    create_key(user_id="alice", printed_name="Alice Smith", passphrase=PASSPHRASE)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for index in range(2 * MAX_FAILURES):
        # five failures are always more than FAILURE_WINDOW apart, so no window holds five
        _at(monkeypatch, start + index * (FAILURE_WINDOW / (MAX_FAILURES - 1) + timedelta(minutes=1)))
        with pytest.raises(SigningError) as wrong:
            load_signer("alice", passphrase="guess")
        assert wrong.value.code is None
    assert load_signer("alice", passphrase=PASSPHRASE).user_id == "alice"


def test_attempts_enter_the_trail_at_the_next_sign_in_signed_by_the_user(ledger, people):
    from clinval.signing import access_state, record_access_failures

    signer = create_key(user_id="carol", printed_name="Carol Example", passphrase=PASSPHRASE)
    register_key(ledger, signer=signer)
    for _ in range(2):
        with pytest.raises(SigningError):
            load_signer("carol", passphrase="guess")
    carol = load_signer("carol", passphrase=PASSPHRASE)
    with pytest.raises(LedgerError) as other:
        record_access_failures(ledger, signer=people["alice"], user_id="carol")
    assert other.value.code == ErrorCode.UNAUTHORIZED  # only carol or the genesis key records them

    entry = record_access_failures(ledger, signer=carol)

    assert entry.kind == "access_failure" and entry.actor == "carol" and entry.body["user_id"] == "carol"
    assert [a["outcome"] for a in entry.body["attempts"]] == ["wrong passphrase", "wrong passphrase"]
    assert access_state("carol").attempts == () and record_access_failures(ledger, signer=carol) is None
    assert verify(ledger.path).ok


def test_an_unreadable_attempts_file_locks_rather_than_unlocks():
    from clinval.signing import LOCKED_OUT, access_state

    create_key(user_id="alice", printed_name="Alice Smith", passphrase=PASSPHRASE)
    access_state("alice").path.write_text("not json")
    with pytest.raises(SigningError) as locked:
        load_signer("alice", passphrase=PASSPHRASE)
    assert locked.value.code == LOCKED_OUT


def test_a_machine_identity_may_not_sign_and_a_person_may_not_record_runs(ledger, people):
    alert = ledger.append(kind="drift_alert", body={"alert_id": "a1"}, signer=people["pipeline"])
    with pytest.raises(LedgerError) as machine:
        esign(ledger, signer=people["pipeline"], target_ref=str(alert.seq), target_digest=alert.digest,
              meaning="approved", reason="auto")
    assert machine.value.code == ErrorCode.UNAUTHORIZED and "machine identity" in machine.value.message
    with pytest.raises(LedgerError) as person:
        ledger.append(kind="retrain", body={"candidate_id": "c1"}, signer=people["alice"])
    assert person.value.code == ErrorCode.UNAUTHORIZED


def test_a_machine_identity_is_registered_by_the_genesis_key(ledger, people):
    bot = Signer.ephemeral(user_id="bot", printed_name="Scoring Bot")
    with pytest.raises(LedgerError) as alone:
        register_key(ledger, signer=bot, role="machine")
    assert alone.value.code == ErrorCode.UNAUTHORIZED
    with pytest.raises(LedgerError) as by_person:
        register_key(ledger, signer=bot, role="machine", endorser=people["alice"])
    assert by_person.value.code == ErrorCode.UNAUTHORIZED
    register_key(ledger, signer=bot, role="machine", endorser=people["pipeline"])  # the genesis key
    ledger.append(kind="pipeline_run", body={"n": 1}, signer=bot)
    with pytest.raises(LedgerError) as turned:
        register_key(ledger, signer=Signer.ephemeral(user_id="bot", printed_name="Scoring Bot"),
                     endorser=people["pipeline"])  # the same user id as a person
    assert turned.value.code == ErrorCode.UNAUTHORIZED and "signs as a machine" in turned.value.message
    assert verify(ledger.path).ok


def test_the_first_decision_on_an_alert_is_final_whoever_signs_next(ledger, people):
    alert = ledger.append(kind="drift_alert", body={"alert_id": "a1"}, signer=people["pipeline"])
    esign(ledger, signer=people["alice"], target_ref=str(alert.seq), target_digest=alert.digest,
          meaning="rejected", reason="not convinced")
    with pytest.raises(LedgerError) as again:
        esign(ledger, signer=people["bob"], target_ref=str(alert.seq), target_digest=alert.digest,
              meaning="approved", reason="overrule")
    assert again.value.code == ErrorCode.DUPLICATE_DECISION and "was already rejected" in again.value.message
    review = esign(ledger, signer=people["bob"], target_ref=str(alert.seq), target_digest=alert.digest,
                   meaning="reviewed", reason="read it")  # other meanings are not decisions
    assert review.kind == "esig" and verify(ledger.path).ok
