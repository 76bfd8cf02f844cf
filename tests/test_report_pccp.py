"""The PCCP report: built from the evidence records and the audit ledger, verified first."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup
from click.testing import CliRunner

from clinval import review
from clinval.cli.report import report as report_cli
from clinval.ledger import Ledger, record_run, register_key, verify
from clinval.pccp import plan_from_params
from clinval.report import NOT_VERIFIED, write_pccp_report
from clinval.signing import Signer, esign
from studies import MONICA_PARAMS

ROOT = Path(__file__).resolve().parents[1]

PLAN_FILE = MONICA_PARAMS / "pccp.yaml"  # pinned: params/ may name another study
ALERT = {
    "id": "calibration_drift-1991-aaaa", "kind": "drift", "trigger": "calibration_drift", "period": "1991",
    "summary": "1991: O/E 0.78 (95% CI 0.64 to 0.96) lies outside [0.8, 1.25]", "modification": "recalibration",
    "n_records": 450, "queue_file": "data/review_queue/calibration_drift-1991-aaaa.parquet",
    "evidence": {"metric": "O/E", "value": 0.78, "lower": 0.64, "upper": 0.96, "n": 450},
}
OPEN_ALERT = {**ALERT, "id": "fairness_gap-1993-bbbb", "kind": "fairness", "trigger": "fairness_gap", "period": "1993",
              "summary": "1993: 1 flagged disparity.", "modification": None,
              "queue_file": "data/review_queue/fairness_gap-1993-bbbb.parquet", "evidence": {}}
CANDIDATE_ID = "recalibration-cccc"
CRITERIA_PASSING = [
    {"criterion": name, "requirement": requirement, "result": result, "passed": True}
    for name, requirement, result in (
        ("AUROC non-inferiority", "lower 95% bound > -0.02", "0.000 (95% CI 0.000 to 0.000)"),
        ("calibration slope", "slope within [0.8, 1.2]", "1.047 (95% CI 0.713 to 1.381)"),
        ("observed/expected", "95% CI of O/E includes 1", "1.003 (95% CI 0.814 to 1.236)"),
    )
]
O_E_FAILING = {"criterion": "observed/expected", "requirement": "95% CI of O/E includes 1",
               "result": "0.739 (95% CI 0.584 to 0.935)", "passed": False}


@dataclass
class Workbench:
    """A small repository: records, an approval, a candidate and a ledger recording them."""

    root: Path
    ledger: Ledger
    signers: dict[str, Signer]

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def approvals(self) -> Path:
        return self.root / "audit" / "approvals"

    def write(self, *, plan_file: Path = PLAN_FILE, name: str = "pccp_report.html"):
        plan = plan_from_params(yaml.safe_load(plan_file.read_text()))
        return write_pccp_report(plan=plan, plan_file=plan_file, ledger=self.ledger, reports_dir=self.reports,
                                 out=self.reports / name, approvals_dir=self.approvals)


def _write_record(root: Path, name: str, **content) -> None:
    record = {"record": name, "title": name, "status": f"{name} status", "alerts": [], "candidates": [],
              "values": {}, "inputs": {}, **content}
    (root / "reports" / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    (root / "reports" / f"{name}.html").write_text(f"<html><body>{name}</body></html>\n")


def _touch(root: Path, relative: str, data: bytes) -> None:
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(data)


def build_workbench(root: Path, *, criteria=CRITERIA_PASSING, promote: bool = True, candidate: bool = True,
                    promoter: str = "bob", approvals: list | None = None) -> Workbench:
    """Records 01-03 with two alerts; alice approves one; 04 holds a candidate for it; bob promotes it."""
    (root / "reports").mkdir(parents=True)
    _touch(root, "dvc.lock", b"schema: '2.0'\nstages: {}\n")
    for alert in (ALERT, OPEN_ALERT):
        _touch(root, alert["queue_file"], b"review queue rows\n")
    _write_record(root, "01_reference_profile")
    _write_record(root, "02_drift_analysis", alerts=[ALERT], values={"findings": ["Observed/expected fell below 1 in 1991."]})
    _write_record(root, "03_fairness_audit", alerts=[OPEN_ALERT])
    ledger = Ledger(path=root / "audit" / "ledger.jsonl", checkpoint_dir=root / "audit" / "checkpoints",
                    keys_dir=root / "audit" / "keys")
    signers = {user: Signer.ephemeral(user_id=user, printed_name=name)
               for user, name in (("pipeline", "clinval pipeline"), ("alice", "Alice Smith"), ("bob", "Bob Jones"))}
    record_run(ledger, signer=signers["pipeline"], root=root)
    register_key(ledger, signer=signers["alice"])
    register_key(ledger, signer=signers["bob"])
    approval = review.decide(ledger=ledger, signer=signers["alice"], alert=ALERT, decision="approved",
                             reason="O/E confirmed on chart review", approvals_dir=root / "audit" / "approvals")
    if not candidate:
        return Workbench(root, ledger, signers)
    passed = all(c["passed"] for c in criteria)
    model_file = f"models/candidates/{CANDIDATE_ID}/model.joblib"
    _touch(root, model_file, b"candidate model\n")
    _write_record(
        root, "04_revalidation",
        inputs={"params/pccp.yaml": hashlib.sha256(PLAN_FILE.read_bytes()).hexdigest()},
        candidates=[{"id": CANDIDATE_ID, "modification": "recalibration", "alert_ids": [ALERT["id"]],
                     "approved_by": ["alice"], "approvals": [approval.reference()] if approvals is None else approvals,
                     "plan_sha256": hashlib.sha256(PLAN_FILE.read_bytes()).hexdigest(),
                     "model_file": model_file, "training_data_digest": "d" * 64,
                     "training_periods": ["1991", "1992"], "sequestered_periods": ["1993"],
                     "decision": "promote" if passed else "reject", "reasons": [], "criteria": criteria,
                     "report": "reports/04_revalidation.html"}],
        values={f"metrics {CANDIDATE_ID}": [
            {"model": m, "metric": "O/E", "value": v, "lower": v - 0.2, "upper": v + 0.2, "status": "ok"}
            for m, v in (("locked", 0.78), (CANDIDATE_ID, 1.0))]},
    )
    record_run(ledger, signer=signers["pipeline"], root=root)
    if promote and passed:
        retrain = ledger.find(kind="retrain", candidate_id=CANDIDATE_ID)[-1]
        signature = esign(ledger, signer=signers[promoter], target_ref=str(retrain.seq), target_digest=retrain.digest,
                          meaning="approved", reason="all acceptance criteria met")
        ledger.append(kind="model_version", signer=signers[promoter], body={
            "candidate_id": CANDIDATE_ID, "modification": "recalibration",
            "model_file": retrain.body["model_file"], "training_data_digest": "d" * 64,
            "validation_report": retrain.body["report"], "retraining_approved_by": ["alice"],
            "promoted_by": promoter, "promotion_esig_seq": signature.seq, "retrain_seq": retrain.seq,
            "criteria": [c["criterion"] for c in criteria]})
    return Workbench(root, ledger, signers)


@pytest.fixture(autouse=True)
def isolated_key_store(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CLINVAL_HOME", str(tmp_path_factory.mktemp("clinval_home")))


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


def _text(node) -> str:
    return re.sub(r"\s+", " ", node.get_text(" ")).strip()


def _trace_rows(soup: BeautifulSoup) -> list[str]:
    table = soup.find("table", class_="trace")
    assert table is not None, "no traceability table"
    return [_text(row) for row in table.find("tbody").find_all("tr")]


def test_traceability_of_a_promoted_candidate_names_results_digest_and_both_signatures(tmp_path):
    bench = build_workbench(tmp_path)
    result = bench.write()
    assert result.verification.ok
    rows = _trace_rows(_soup(result.path))
    first = rows[0]
    assert CANDIDATE_ID in first and "2.1 Data management" in first and "conforms to the plan" in first
    approval = bench.ledger.find(kind="esig", printed_name="Alice Smith")[-1]
    promotion = bench.ledger.find(kind="esig", printed_name="Bob Jones")[-1]
    assert f"APPROVED by Alice Smith (alice, key {approval.key}), {approval.time} (UTC), ledger seq {approval.seq}" in first
    assert f"APPROVED by Bob Jones (bob, key {promotion.key}), {promotion.time} (UTC), ledger seq {promotion.seq}" in first
    for criterion in CRITERIA_PASSING:
        [row] = [r for r in rows if f"{criterion['criterion']}: {criterion['requirement']}" in r]
        assert f"{criterion['result']} PASSED" in row
    retrain = bench.ledger.find(kind="retrain", candidate_id=CANDIDATE_ID)[-1]
    digest = hashlib.sha256((bench.reports / "04_revalidation.html").read_bytes()).hexdigest()
    assert retrain.body["report"]["sha256"] == digest
    assert f"reports/04_revalidation.html {digest} bound at ledger seq {retrain.seq}; the current file matches" in first
    [update] = [r for r in rows if "2.4 Update procedures" in r]
    version = bench.ledger.find(kind="model_version")[-1]
    bob = f"Bob Jones (bob, key {promotion.key})"
    assert f"promoted at seq {version.seq} by {bob} (retraining approved by alice)" in update and "PASSED" in update
    [retraining] = [r for r in rows if "2.2 Re-training" in r]
    alice = f"Alice Smith (alice, key {approval.key})"
    assert f"retraining for alert {ALERT['id']} approved by a signed decision APPROVED by {alice} PASSED" in retraining
    assert NOT_VERIFIED not in result.path.read_text()


def test_an_evidence_record_changed_since_the_ledger_bound_it_is_flagged(tmp_path):
    bench = build_workbench(tmp_path)
    (bench.reports / "04_revalidation.html").write_text("<html><body>edited afterwards</body></html>\n")
    rows = _trace_rows(_soup(bench.write().path))
    retrain = bench.ledger.find(kind="retrain", candidate_id=CANDIDATE_ID)[-1]
    assert f"bound at ledger seq {retrain.seq}; the current file differs" in rows[0]


def test_verdicts_come_from_the_ledger_not_from_the_revalidation_record(tmp_path):
    # issue 10.2: a record edited after `clinval audit record` changes no verdict
    bench = build_workbench(tmp_path, criteria=[*CRITERIA_PASSING[:2], O_E_FAILING])
    path = bench.reports / "04_revalidation.json"
    record = json.loads(path.read_text())
    record["candidates"][0].update(decision="promote", criteria=[{**c, "passed": True} for c in CRITERIA_PASSING])
    path.write_text(json.dumps(record))
    rows = _trace_rows(_soup(bench.write().path))
    [row] = [r for r in rows if "observed/expected: 95% CI of O/E includes 1" in r]
    assert "0.739 (95% CI 0.584 to 0.935) NOT MET" in row
    [update] = [r for r in rows if "2.4 Update procedures" in r]
    assert "not promoted (failed: observed/expected)" in update


def test_a_candidate_naming_an_approval_that_is_not_in_the_ledger_was_not_approved(tmp_path):
    forged = {"alert_id": ALERT["id"], "seq": 2, "sha256": "0" * 64}
    bench = build_workbench(tmp_path, approvals=[forged], promote=False)
    [retraining] = [r for r in _trace_rows(_soup(bench.write().path)) if "2.2 Re-training" in r]
    assert "NOT_IN_LEDGER" in retraining and "NOT MET" in retraining and "PASSED" not in retraining


def test_the_report_pins_the_ledger_it_was_made_from(tmp_path):
    bench = build_workbench(tmp_path)
    result = verify(bench.ledger.path)
    text = _text(_soup(bench.write().path))
    assert (f"made from the audit ledger with {result.size} entries, head {result.head} and genesis key "
            f"{result.genesis_key}") in text


def test_a_ledger_that_does_not_start_from_the_pinned_genesis_key_is_flagged(tmp_path):
    from clinval.ledger import TrustRoot, write_trust_root

    bench = build_workbench(tmp_path)
    trust = write_trust_root(tmp_path / "trust.json", TrustRoot(genesis_key="0" * 32))
    plan = plan_from_params(yaml.safe_load(PLAN_FILE.read_text()))
    result = write_pccp_report(plan=plan, ledger=bench.ledger, reports_dir=bench.reports, out=tmp_path / "p.html",
                               trust=trust)
    assert result.verification.code == "UNTRUSTED_ROOT"
    assert "FAILED VERIFICATION: UNTRUSTED_ROOT at seq 0" in _text(_soup(result.path))


def test_a_rejected_candidate_is_traced_as_not_met_and_not_promoted(tmp_path):
    bench = build_workbench(tmp_path, criteria=[*CRITERIA_PASSING[:2], O_E_FAILING])
    rows = _trace_rows(_soup(bench.write().path))
    [row] = [r for r in rows if "observed/expected: 95% CI of O/E includes 1" in r]
    assert "0.739 (95% CI 0.584 to 0.935) NOT MET" in row
    [update] = [r for r in rows if "2.4 Update procedures" in r]
    assert "not promoted (failed: observed/expected); the locked model stays in use" in update
    assert "Bob Jones" not in rows[0]


def test_a_promotion_by_the_person_who_approved_the_retraining_breaks_the_two_person_rule(tmp_path):
    # `clinval model promote` refuses this; a ledger written another way must not pass as compliant.
    bench = build_workbench(tmp_path, promoter="alice")
    [update] = [r for r in _trace_rows(_soup(bench.write().path)) if "2.4 Update procedures" in r]
    alice = f"Alice Smith (alice, key {bench.signers['alice'].key_id})"
    assert f"by {alice} (retraining approved by alice)" in update and "SAME_PERSON" in update and "NOT MET" in update


def test_a_candidate_meeting_every_criterion_without_promotion_awaits_the_second_signature(tmp_path):
    bench = build_workbench(tmp_path, promote=False)
    [update] = [r for r in _trace_rows(_soup(bench.write().path)) if "2.4 Update procedures" in r]
    assert "awaiting a second person's promotion signature" in update
    assert "PASSED" not in update


def _edit_printed_name(bench: Workbench) -> None:
    bench.ledger.path.write_text(bench.ledger.path.read_text().replace('"printed_name":"Alice Smith","reason"',
                                                                       '"printed_name":"Mallory","reason"'))


def _remove_line(bench: Workbench) -> None:
    lines = bench.ledger.path.read_text().splitlines(keepends=True)
    bench.ledger.path.write_text("".join(lines[:3] + lines[4:]))


def _truncate(bench: Workbench) -> None:
    lines = bench.ledger.path.read_text().splitlines(keepends=True)
    bench.ledger.path.write_text("".join(lines[:-2]))


@pytest.mark.parametrize(("tamper", "in_trace"), [
    (_edit_printed_name,
     f"APPROVED by Mallory (alice, key {{key}}), {{time}} (UTC), ledger seq {{seq}}: O/E confirmed on chart review "
     f"[{NOT_VERIFIED}]"),
    (_remove_line, f"[{NOT_VERIFIED}]"),
    # The checkpoint vouches for the cut entries; what remains shows no promotion.
    (_truncate, "awaiting a second person's promotion signature"),
], ids=["edited-printed-name", "removed-line", "truncated"])
def test_a_tampered_ledger_is_reported_at_the_top_and_still_rendered(tmp_path, tamper, in_trace):
    bench = build_workbench(tmp_path)
    approval = bench.ledger.find(kind="esig", printed_name="Alice Smith")[-1]
    tamper(bench)
    expected = verify(bench.ledger.path, checkpoint=bench.root / "audit" / "checkpoints" / "latest.json")
    assert not expected.ok
    result = bench.write()
    assert result.verification.code == expected.code and result.verification.seq == expected.seq
    soup = _soup(result.path)
    banner = soup.find("div", class_="banner")
    assert "bad" in banner["class"] and banner.find_previous("h2") is None, "the failure must be the first thing shown"
    assert f"FAILED VERIFICATION: {expected.code} at seq {expected.seq}" in _text(banner)
    assert _trace_rows(soup), "the report still renders what it can"
    trace = " ".join(_trace_rows(soup))
    assert in_trace.format(time=approval.time, seq=approval.seq, key=approval.key) in trace


def test_signatures_after_the_first_bad_entry_are_marked_and_not_counted_as_approval(tmp_path):
    bench = build_workbench(tmp_path)
    _edit_printed_name(bench)
    rows = _trace_rows(_soup(bench.write().path))
    [retraining] = [r for r in rows if "2.2 Re-training" in r]
    key = bench.signers["alice"].key_id
    assert f"APPROVED by Mallory (alice, key {key}) [{NOT_VERIFIED}] NOT MET" in retraining
    [update] = [r for r in rows if "2.4 Update procedures" in r]
    assert "NOT MET" in update


def test_sign_off_page_reuses_the_ledger_signoff_with_printed_name_time_and_meaning(tmp_path):
    bench = build_workbench(tmp_path)
    soup = _soup(bench.write().path)
    signoff = soup.find("section", class_="signoff")
    assert signoff is not None
    heading = signoff.find("h2", string="Signatures")
    rows = [[_text(td) for td in tr.find_all("td")] for tr in heading.find_next("table").find_all("tr")[1:]]
    esigs = [e for e in bench.ledger.entries() if e.kind == "esig"]
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (str(e.seq), e.body["printed_name"], e.actor, e.key, e.time, e.body["meaning"].upper()) for e in esigs]
    assert signoff.find("table", class_="wet") is not None, "room for signatures on paper"


def test_the_three_pccp_components_each_open_with_a_sentence(tmp_path):
    soup = _soup(build_workbench(tmp_path).write().path)
    headings = [_text(h) for h in soup.find_all("h2")]
    for title in ("1. Description of Modifications", "2. Modification Protocol", "3. Impact Assessment", "4. Traceability"):
        assert title in headings
        lead = soup.find("h2", string=title).find_next_sibling()
        assert lead.name == "p" and "lead" in lead["class"]
        assert _text(lead).startswith("This table" if title.startswith("4.") else "This section")
    subsections = [_text(h) for h in soup.find_all("h3")]
    assert ["2.1 Data management", "2.2 Re-training", "2.3 Performance evaluation", "2.4 Update procedures"] == [
        s for s in subsections if s.startswith("2.")]


def test_alerts_show_their_decision_or_that_they_are_open(tmp_path):
    soup = _soup(build_workbench(tmp_path).write().path)
    table = soup.find("caption", string="Alerts and decisions").find_parent("table")
    rows = {_text(tr.find("td")): _text(tr) for tr in table.find("tbody").find_all("tr")}
    assert "APPROVED by Alice Smith (alice, key " in rows[ALERT["id"]]
    assert "OPEN: no signed decision" in rows[OPEN_ALERT["id"]]


def test_an_approval_file_that_fails_its_check_is_flagged(tmp_path):
    bench = build_workbench(tmp_path)
    path = bench.approvals / f"{ALERT['id']}.json"
    approval = json.loads(path.read_text())
    approval["decision"] = "rejected"
    path.write_text(json.dumps(approval))
    text = _text(_soup(bench.write().path))
    assert (f"Approval file for {ALERT['id']}: MALFORMED: approval {ALERT['id']}: the signature's meaning is not "
            "'rejected'") in text


def test_a_plan_other_than_the_one_the_revalidation_applied_is_flagged(tmp_path):
    bench = build_workbench(tmp_path)
    assert "is not the plan 04_revalidation applied" not in bench.write().path.read_text()
    other = tmp_path / "other-pccp.yaml"
    other.write_text(PLAN_FILE.read_text() + "\n# edited\n")
    banners = _soup(bench.write(plan_file=other).path).find_all("div", class_="banner")
    assert "ok" in banners[0]["class"], "the ledger itself is fine"
    assert "bad" in banners[1]["class"] and "is not the plan 04_revalidation applied" in _text(banners[1])


def test_no_alerts_no_candidates_and_an_empty_ledger_still_render(tmp_path):
    (tmp_path / "reports").mkdir()
    _write_record(tmp_path, "01_reference_profile")
    ledger = Ledger(path=tmp_path / "audit" / "ledger.jsonl", checkpoint_dir=tmp_path / "audit" / "checkpoints")
    plan = plan_from_params(yaml.safe_load(PLAN_FILE.read_text()))
    result = write_pccp_report(plan=plan, ledger=ledger, reports_dir=tmp_path / "reports", out=tmp_path / "pccp.html")
    assert result.verification.ok
    text = _text(_soup(result.path))
    for sentence in ("Nothing has been recorded or signed yet.", "No modification has been made under the plan",
                     "No alert has been raised: no trigger fired.", "No candidate has been evaluated.",
                     "No candidate has been promoted", "No modification to trace", "No electronic signatures yet."):
        assert sentence in text


def test_an_approved_alert_without_a_candidate_yet(tmp_path):
    bench = build_workbench(tmp_path, candidate=False)
    text = _text(_soup(bench.write().path))
    assert "No modification to trace: no candidate model was built." in text
    assert "APPROVED by Alice Smith (alice, key " in text


def test_a_refused_modification_and_a_promotion_no_longer_in_the_records_are_both_reported(tmp_path):
    bench = build_workbench(tmp_path)
    reason = "refused: the change control plan locks the feature list"
    _write_record(tmp_path, "04_revalidation", values={"refusals": [{"alert_id": ALERT["id"], "reason": reason}]})
    text = _text(_soup(bench.write().path))
    version = bench.ledger.find(kind="model_version")[-1]
    assert f"Modifications refused under the plan Alert Why no candidate was built {ALERT['id']} {reason}" in text
    retrain = bench.ledger.find(kind="retrain", candidate_id=CANDIDATE_ID)[-1]
    assert (f"{CANDIDATE_ID} recalibration {ALERT['id']} 1991, 1992 PROMOTE (recorded at seq {retrain.seq}) "
            f"promoted (seq {version.seq})") in text


def test_a_revalidation_record_without_refusals_shows_no_refusal_table(tmp_path):
    bench = build_workbench(tmp_path, candidate=False)
    _write_record(tmp_path, "04_revalidation", values={"refusals": ["No refusals."]})
    assert "Modifications refused" not in _text(_soup(bench.write().path))


def test_the_report_is_self_contained(tmp_path):
    page = build_workbench(tmp_path).write().path.read_text()
    soup = BeautifulSoup(page, "html.parser")
    assert not soup.find_all(["script", "link", "iframe"])
    for tag in soup.find_all(src=True) + soup.find_all(href=True):
        assert not re.match(r"(https?:)?//", tag.get("src") or tag.get("href"))
    assert "@import" not in page and "url(" not in page


def test_the_same_inputs_give_the_same_report(tmp_path):
    bench = build_workbench(tmp_path)
    assert bench.write(name="a.html").path.read_bytes() == bench.write(name="b.html").path.read_bytes()


def test_cli_writes_the_report_and_exits_1_on_a_ledger_that_fails_verification(tmp_path):
    bench = build_workbench(tmp_path)
    out = tmp_path / "out" / "pccp.html"
    args = ["pccp", "--reports", str(bench.reports), "--plan", str(PLAN_FILE), "--approvals", str(bench.approvals),
            "--ledger", str(bench.ledger.path), "--checkpoints", str(tmp_path / "audit" / "checkpoints"),
            "--keys-dir", str(tmp_path / "audit" / "keys"), "--out", str(out)]
    ok = CliRunner().invoke(report_cli, args)
    assert ok.exit_code == 0, ok.output
    assert f"wrote {out}" in ok.output and out.exists()
    _edit_printed_name(bench)
    out.unlink()
    bad = CliRunner().invoke(report_cli, args)
    assert bad.exit_code == 1
    assert out.exists() and "FAILED VERIFICATION" in out.read_text()
    assert "the audit ledger failed verification" in bad.output


def test_cli_explains_a_missing_plan(tmp_path):
    result = CliRunner().invoke(report_cli, ["pccp", "--plan", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    assert "missing.yaml: params file not found." in result.output
