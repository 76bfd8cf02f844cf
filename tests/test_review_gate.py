"""End to end on MONICA: alert -> signed approval -> candidate -> criteria -> second signature.

The tests of this module are one scenario, run in order on one clone.

One clean clone of the repository is driven through the whole review gate with the real
command line, as reviewers would: the calibration alert for the 1990s fires, reviewer A
approves it, the allowed candidate is built and evaluated, reviewer B promotes it, and
`clinval audit verify --deep` passes. And the refusals: promotion without an approval in
the ledger, the same person signing both gates, a disallowed modification, and
promotion of a candidate that fails a criterion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent
PASSPHRASES = {"pipeline": "pipeline-passphrase", "alice": "alice-passphrase", "bob": "bob-passphrase"}


class Repo:
    """A clean clone plus a private key store, driven through the CLI."""

    def __init__(self, path: Path, home: Path):
        self.path, self.home = path, home

    def run(self, *args: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CLINVAL_HOME": str(self.home)}
        env.pop("CLINVAL_USER", None)
        env.pop("CLINVAL_PASSPHRASE", None)
        if user:
            env.update(CLINVAL_USER=user, CLINVAL_PASSPHRASE=PASSPHRASES[user])
        result = subprocess.run(args, cwd=self.path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def record(self) -> None:
        self.run("clinval", "audit", "record", "--create-signer", user="pipeline")

    def json(self, relative: str) -> dict:
        return json.loads((self.path / relative).read_text())

    def set_plan(self, **data_management) -> None:
        path = self.path / "params" / "pccp.yaml"
        plan = yaml.safe_load(path.read_text())
        plan["data_management"].update(data_management)
        path.write_text(yaml.safe_dump(plan, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    base = tmp_path_factory.mktemp("gate")
    clone = base / "clinval"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    r = Repo(clone, base / "home")
    r.run("clinval", "study", "embed")
    r.run("dvc", "repro")
    r.record()
    r.run("clinval", "keys", "init", "--id", "alice", "--name", "Alice Reviewer", user="alice")
    r.run("clinval", "keys", "init", "--id", "bob", "--name", "Bob Quality", user="bob")
    return r


def _alert(repo: Repo, trigger: str, period: str) -> dict:
    alerts = repo.json("reports/02_drift_analysis.json")["alerts"]
    return next(a for a in alerts if a["trigger"] == trigger and a["period"] == period)


def test_the_calibration_alert_for_the_1990s_fires(repo):
    alerts = repo.json("reports/02_drift_analysis.json")["alerts"]
    fired = {a["period"] for a in alerts if a["trigger"] == "calibration_drift"}
    assert {"1991", "1992", "1993"} <= fired
    assert not fired & {"1988", "1989", "1990"}
    queue = repo.json("data/review_queue/manifest.json")
    assert {a["id"] for a in alerts} <= {q["id"] for q in queue}


def test_nothing_is_built_before_a_person_approves(repo):
    manifest = repo.json("models/candidates/manifest.json")
    assert manifest == {"candidates": [], "refusals": []}


def test_promotion_without_an_approval_in_the_ledger_is_refused(repo, tmp_path):
    # a forged approval file, correctly signed by a key the ledger never saw: the offline
    # check at build time passes, so a candidate is built; only the ledger can tell
    from clinval.ledger import Ledger, register_key
    from clinval.review import decide
    from clinval.signing import Signer

    alert = _alert(repo, "calibration_drift", "1991")
    (tmp_path / "shadow.jsonl").write_bytes((repo.path / "audit" / "ledger.jsonl").read_bytes())
    shadow = Ledger(path=tmp_path / "shadow.jsonl", checkpoint_dir=tmp_path / "cp", keys_dir=tmp_path / "keys")
    mallory = Signer.ephemeral(user_id="mallory", printed_name="Mallory")
    register_key(shadow, signer=mallory)
    forged = decide(ledger=shadow, signer=mallory, alert=alert, decision="approved", reason="forged",
                    approvals_dir=repo.path / "audit" / "approvals")
    repo.set_plan(training_periods=["1991"], sequestered_periods=["1992"])
    repo.run("dvc", "repro")
    repo.record()
    candidate = repo.json("reports/04_revalidation.json")["candidates"][0]
    assert candidate["decision"] == "promote" and candidate["approved_by"] == ["mallory"]
    refused = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "x", user="bob", check=False)
    assert refused.returncode == 2 and "no signed approval" in refused.stderr
    (repo.path / "audit" / "approvals" / f"{forged.alert_id}.json").unlink()


def test_reviewer_a_approves_and_the_allowed_candidate_fails_on_the_sequestered_1993(repo):
    repo.set_plan(training_periods=["1991", "1992"], sequestered_periods=["1993"])  # the plan as shipped
    alert = _alert(repo, "calibration_drift", "1991")
    out = repo.run("clinval", "review", "approve", alert["id"], "--reason", "O/E confirmed on chart review", user="alice")
    assert "approved" in out.stdout and "Alice Reviewer" in out.stdout
    again = repo.run("clinval", "review", "approve", alert["id"], "--reason", "again", user="alice", check=False)
    assert again.returncode == 2 and "already approved" in again.stderr

    repo.run("dvc", "repro")
    repo.record()
    candidates = repo.json("reports/04_revalidation.json")["candidates"]
    assert len(candidates) == 1
    candidate = candidates[0]
    assert candidate["modification"] == "recalibration" and candidate["alert_ids"] == [alert["id"]]
    assert candidate["approved_by"] == ["alice"]
    assert candidate["training_periods"] == ["1991", "1992"] and candidate["sequestered_periods"] == ["1993"]
    # mortality kept falling in 1993: recalibrating to 1991-92 still over-predicts there
    verdict = {c["criterion"]: c["passed"] for c in candidate["criteria"]}
    assert verdict["observed/expected"] is False and candidate["decision"] == "reject"

    refused = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "ship it", user="bob", check=False)
    assert refused.returncode == 2
    assert "does not meet the acceptance criteria" in refused.stderr and "observed/expected" in refused.stderr


def test_a_candidate_that_passes_is_promoted_only_by_a_second_person(repo):
    # an amended plan: fit on 1991, sequester 1992
    repo.set_plan(training_periods=["1991"], sequestered_periods=["1992"])
    repo.run("dvc", "repro")
    repo.record()
    candidate = repo.json("reports/04_revalidation.json")["candidates"][0]
    assert candidate["decision"] == "promote", candidate["reasons"]
    assert candidate["approved_by"] == ["alice"]

    same = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "mine", user="alice", check=False)
    assert same.returncode == 2 and "different person" in same.stderr

    out = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "criteria met", user="bob")
    assert "promoted" in out.stdout
    twice = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "again", user="bob", check=False)
    assert twice.returncode == 2 and "already promoted" in twice.stderr

    entries = [json.loads(line) for line in (repo.path / "audit" / "ledger.jsonl").read_text().splitlines()]
    version = [e for e in entries if e["kind"] == "model_version"][-1]
    assert version["body"]["candidate_id"] == candidate["id"]
    assert version["body"]["retraining_approved_by"] == ["alice"] and version["body"]["promoted_by"] == "bob"
    esig = entries[version["body"]["promotion_esig_seq"]]
    assert esig["body"]["meaning"] == "approved" and esig["body"]["printed_name"] == "Bob Quality"
    assert repo.run("clinval", "audit", "verify", "--deep").returncode == 0


def test_a_modification_the_plan_does_not_allow_is_refused(repo):
    path = repo.path / "params" / "pccp.yaml"
    plan = yaml.safe_load(path.read_text())
    plan["locked"]["features"] = [f for f in plan["locked"]["features"] if f != "stroke"]
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    repo.run("dvc", "repro")
    repo.record()
    record = repo.json("reports/04_revalidation.json")
    assert record["candidates"] == []
    reasons = " ".join(r["reason"] for r in repo.json("models/candidates/manifest.json")["refusals"])
    assert "locks the feature list" in reasons
    assert "locks the feature list" in json.dumps(record["values"]["refusals"])


def test_the_ledger_still_verifies_after_everything(repo):
    assert repo.run("clinval", "audit", "verify", "--deep").returncode == 0
    # the promoted model is kept although the candidates folder was rebuilt since
    promoted = list((repo.path / "models" / "promoted").glob("*/model.joblib"))
    assert len(promoted) == 1 and not list((repo.path / "models" / "candidates").glob("*/model.joblib"))
    report = repo.run("clinval", "report", "pccp")
    page = (repo.path / "reports" / "pccp_report.html").read_text()
    assert "Alice Reviewer" in page and "Bob Quality" in page and "PROMOTE" in page and "refused" in page.lower()
