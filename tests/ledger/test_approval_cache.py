"""The approval cache is rebuilt from the ledger, and the gate decides from the ledger alone."""

from __future__ import annotations

import json

import yaml
from ledger_harness import PASSING, GateWorkbench

from clinval._io import sha256_file
from clinval.gate import GateLedger
from clinval.pccp import plan_from_params
from clinval.review import check_approval, decisions_in, read_approvals, trusted_entries


def _cache(w: GateWorkbench) -> dict[str, tuple[str, ...]]:
    return {a.alert_id: a.lines for a in read_approvals(w.approvals)}


def _ledger_decisions(w: GateWorkbench) -> dict[str, tuple[str, ...]]:
    return {alert_id: a.lines for alert_id, a in decisions_in(w.ledger.entries()).items()}


def test_sync_rebuilds_the_cache_from_the_ledger(gate):
    a1, a2, a3 = (gate.approvals / f"{gate.alert_id(n)}.json" for n in ("A1", "A2", "A3"))
    planted = json.loads(a1.read_text()) | {"alert_id": gate.alert_id("A3")}
    a3.write_text(json.dumps(planted))
    a1.write_text(a1.read_text().replace("O/E confirmed", "O/E refuted"))
    a2.unlink()
    assert _cache(gate) != _ledger_decisions(gate)

    synced = gate.must("review", "sync")

    assert _cache(gate) == _ledger_decisions(gate) and set(_cache(gate)) == {gate.alert_id("A1"), gate.alert_id("A2")}
    assert f"removed (not backed by the ledger: {gate.alert_id('A3')})" in synced.output.replace("\n", " ")
    assert all(check_approval(a) is None for a in read_approvals(gate.approvals))
    untouched = {p.name: p.stat().st_mtime_ns for p in gate.approvals.glob("*.json")}
    gate.must("review", "sync")  # nothing to change: no file is rewritten, so DVC sees no change
    assert {p.name: p.stat().st_mtime_ns for p in gate.approvals.glob("*.json")} == untouched


def test_review_check_names_each_file_the_stage_or_the_ledger_would_refuse(gate):
    a1 = gate.approvals / f"{gate.alert_id('A1')}.json"
    a1.write_text(a1.read_text().replace("O/E confirmed", "O/E refuted"))
    (gate.approvals / "stray.json").write_text("{not json")

    checked = gate.cli("review", "check")

    assert checked.exit_code == 1
    lines = dict(line.split(": ", 1) for line in checked.output.splitlines())
    assert lines[gate.alert_id("A1")].startswith("BAD_SIGNATURE")
    assert lines[gate.alert_id("A2")] == "ok"
    assert lines["stray"].startswith("MALFORMED")


def _promotion(w: GateWorkbench, candidate: str, promoter: str = "bob"):
    plan_file = w.root / "params" / "pccp.yaml"
    entries, verification = trusted_entries(w.ledger)
    assert verification.ok, str(verification)
    return GateLedger(entries).promotion_problem(
        candidate_id=candidate, promoter=promoter, plan=plan_from_params(yaml.safe_load(plan_file.read_text())),
        plan_sha256=sha256_file(plan_file))


def test_an_automatic_modification_needs_no_approval_but_still_a_person_to_promote(gate):
    plan_file = gate.root / "params" / "pccp.yaml"
    plan = yaml.safe_load(plan_file.read_text())
    gate.write_revalidation([gate.candidate("recalibration-nobody", alerts=[], approvers=[], criteria=PASSING)])
    gate.must("audit", "record", user="pipeline")
    assert str(_promotion(gate, "recalibration-nobody").code) == "NOT_APPROVED"

    plan["modifications"]["recalibration"]["approval"] = "automatic"
    plan_file.write_text(yaml.safe_dump(plan, sort_keys=False))
    gate.write_revalidation([gate.candidate("recalibration-auto", alerts=[], approvers=[], criteria=PASSING)])
    gate.must("audit", "record", user="pipeline")
    assert _promotion(gate, "recalibration-auto") is None
    machine = gate.cli("model", "promote", "recalibration-auto", "--reason", "auto", user="pipeline")
    assert machine.exit_code == 2 and "UNAUTHORIZED" in machine.output
    assert gate.cli("model", "promote", "recalibration-auto", "--reason", "plan allows it", user="carol").exit_code == 0


def test_an_approval_counts_only_for_the_modification_its_trigger_allows(gate):
    refit = gate.candidate("refit-on-a-recalibration-approval", alerts=["A1"], approvers=["alice"], criteria=PASSING)
    gate.write_revalidation([refit | {"modification": "refit"}])
    gate.must("audit", "record", user="pipeline")

    problem = _promotion(gate, "refit-on-a-recalibration-approval")

    assert str(problem.code) == "NOT_APPROVED" and "allows modification 'recalibration'" in problem.message


def test_a_promotion_is_judged_by_the_rule_in_force_when_it_was_made(gate):
    gate.must("model", "promote", "recalibration-pass", "--reason", "criteria met", user="bob")
    entries, verification = trusted_entries(gate.ledger)
    version = next(e for e in entries if e.kind == "model_version")
    assert GateLedger(entries).promotion_verdict(version, plan=None, plan_sha256=None) is None
    assert version.body["approvals"][0]["alert_id"] == gate.alert_id("A1")
    assert version.body["retraining_approved_by"] == ["alice"] and version.body["promoted_by"] == "bob"


def test_an_alert_not_in_the_ledger_cannot_be_decided_nor_an_unrecorded_candidate_promoted(gate):
    from clinval import review
    from clinval.signing import load_signer

    from ledger_harness import GATE_ALERTS, PASSPHRASES

    alice = load_signer("alice", passphrase=PASSPHRASES["alice"])
    unrecorded = {**GATE_ALERTS["A3"], "id": "calibration_drift-1994-eeeeeeeeee"}
    try:
        review.decide(ledger=gate.ledger, signer=alice, alert=unrecorded, decision="approved", reason="x",
                      approvals_dir=gate.approvals)
    except review.GateRefused as refused:
        assert refused.code == "NOT_RECORDED"
    else:
        raise AssertionError("an alert the ledger never recorded was decided")
    assert str(_promotion(gate, "never-built").code) == "NOT_RECORDED"


def test_a_model_file_changed_since_it_was_recorded_is_not_promoted(gate):
    (gate.root / "models/candidates/recalibration-pass/model.joblib").write_text("another model\n")

    refused = gate.cli("model", "promote", "recalibration-pass", "--reason", "criteria met", user="bob")

    assert refused.exit_code == 2 and "MODEL_CHANGED" in refused.output
    assert not [e for e in gate.entries() if e["kind"] in ("model_version", "esig") and e["actor"] == "bob"
                and e["body"].get("target", {}).get("seq") != gate.alert_seq("A2")]
