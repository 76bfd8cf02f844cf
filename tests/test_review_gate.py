"""End to end on MONICA: alert -> signed approval -> candidate -> criteria -> second signature.

A clean clone of the repository is driven through the review gate with the real command
line, as reviewers would: the calibration alert for the 1990s fires, reviewer A approves
it, the allowed candidate is built and evaluated, reviewer B promotes it, and
`clinval audit verify --deep` passes. And the refusals: promotion without an approval in
the ledger, the same person signing both gates, a disallowed modification, and
promotion of a candidate that fails a criterion.

Speed without dropping a check: the pipeline runs at most once in this file. The clone
pulls the outputs the checkout already computed from the checkout's DVC cache (a local
remote, read only), so `dvc repro` restores instead of recomputing when the committed
`dvc.lock` was produced there (as `make test` does first); otherwise it runs once. Each
scenario then works on its own copy of that clone and re-runs only what its step changes:
an approval re-runs `revalidate` and `index`, nothing else; a change to the plan's data
management re-runs them with `dvc repro --single-item`, because `drift` and `fairness`
track `params/pccp.yaml` whole although they read only its triggers.

Scenarios are module-scoped fixtures that record what the tests assert on, so the tests
do not depend on their order: each fixture builds what it needs from the clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from studies import MONICA_PARAMS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent
PASSPHRASES = {"pipeline": "pipeline-passphrase", "alice": "alice-passphrase", "bob": "bob-passphrase"}
SHIPPED = {"training_periods": ["1991", "1992"], "sequestered_periods": ["1993"]}
AMENDED = {"training_periods": ["1991"], "sequestered_periods": ["1992"]}


class Repo:
    """A clone plus a private key store, driven through the CLI."""

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

    def set_plan(self, *, locked_features: list[str] | None = None, **data_management) -> None:
        path = self.path / "params" / "pccp.yaml"
        plan = yaml.safe_load(path.read_text())
        plan["data_management"].update(data_management)
        if locked_features is not None:
            plan["locked"]["features"] = locked_features
        path.write_text(yaml.safe_dump(plan, sort_keys=False))

    def revalidate(self) -> None:
        """Re-run what a decision or the plan's data management affects: revalidate, then index."""
        self.run("dvc", "repro", "--single-item", "revalidate", "index")

    def copy(self, target: Path) -> Repo:
        """An independent copy (repository, outputs and key store) to run a scenario on."""
        shutil.copytree(self.path, target / "clinval", symlinks=True)
        shutil.copytree(self.home, target / "home")
        return Repo(target / "clinval", target / "home")

    def alert(self, trigger: str, period: str) -> dict:
        alerts = self.json("reports/02_drift_analysis.json")["alerts"]
        return next(a for a in alerts if a["trigger"] == trigger and a["period"] == period)

    def candidate(self) -> dict:
        candidates = self.json("reports/04_revalidation.json")["candidates"]
        assert len(candidates) == 1, candidates
        return candidates[0]


@dataclass
class Seen:
    """What a scenario produced, kept for the tests to assert on."""

    repo: Repo
    outputs: dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Seen:
    """The clone after one pipeline run (restored from the checkout's cache when it can be)."""
    base = tmp_path_factory.mktemp("gate")
    clone = base / "clinval"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    # this scenario is MONICA's whatever study params/ names: install MONICA's pinned params
    shutil.copytree(MONICA_PARAMS, clone / "params", dirs_exist_ok=True)
    repo = Repo(clone, base / "home")
    repo.run("dvc", "remote", "add", "--local", "checkout", str(ROOT / ".dvc" / "cache"))
    repo.run("dvc", "pull", "--remote", "checkout", check=False)  # whatever the checkout has; the rest is computed
    repo.run("clinval", "study", "embed")
    repo.run("dvc", "repro")
    repo.record()
    repo.run("clinval", "keys", "init", "--id", "alice", "--name", "Alice Reviewer", user="alice")
    repo.run("clinval", "keys", "init", "--id", "bob", "--name", "Bob Quality", user="bob")
    return Seen(repo, {
        "alerts": repo.json("reports/02_drift_analysis.json")["alerts"],
        "queue": repo.json("data/review_queue/manifest.json"),
        "candidates": repo.json("models/candidates/manifest.json"),
    })


@pytest.fixture(scope="module")
def forged(pipeline, tmp_path_factory) -> Seen:
    """An approval file signed by a key the ledger never saw, under the amended plan."""
    from clinval.ledger import Ledger, register_key
    from clinval.review import decide
    from clinval.signing import Signer

    repo = pipeline.repo.copy(tmp_path_factory.mktemp("forged"))
    alert = repo.alert("calibration_drift", "1991")
    shadow_dir = repo.path.parent / "shadow"
    shadow_dir.mkdir()
    (shadow_dir / "ledger.jsonl").write_bytes((repo.path / "audit" / "ledger.jsonl").read_bytes())
    shadow = Ledger(path=shadow_dir / "ledger.jsonl", checkpoint_dir=shadow_dir / "cp", keys_dir=shadow_dir / "keys")
    mallory = Signer.ephemeral(user_id="mallory", printed_name="Mallory")
    register_key(shadow, signer=mallory)
    # the shadow ledger's decision, written into the real approval cache
    decide(ledger=shadow, signer=mallory, alert=alert, decision="approved", reason="forged",
           approvals_dir=repo.path / "audit" / "approvals")
    repo.set_plan(**AMENDED)
    repo.revalidate()
    candidate = repo.candidate()
    repo.record()  # also rebuilds the approval cache from the ledger: the forged file goes
    promote = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "x", user="bob", check=False)
    return Seen(repo, {"candidate": candidate, "promote": promote,
                       "cache": sorted(p.name for p in (repo.path / "audit" / "approvals").glob("*.json"))})


@pytest.fixture(scope="module")
def approved(pipeline, tmp_path_factory) -> Seen:
    """Reviewer A approves the 1991 alert under the plan as shipped; the candidate is built."""
    repo = pipeline.repo.copy(tmp_path_factory.mktemp("approved"))
    alert = repo.alert("calibration_drift", "1991")
    approve = repo.run("clinval", "review", "approve", alert["id"], "--reason", "O/E confirmed on chart review",
                       user="alice")
    again = repo.run("clinval", "review", "approve", alert["id"], "--reason", "again", user="alice", check=False)
    repo.run("dvc", "repro")  # the approval changes audit/approvals: revalidate and index re-run, nothing else
    repo.record()
    candidate = repo.candidate()
    promote = repo.run("clinval", "model", "promote", candidate["id"], "--reason", "ship it", user="bob", check=False)
    return Seen(repo, {"alert": alert, "approve": approve, "again": again, "candidate": candidate, "promote": promote})


@pytest.fixture(scope="module")
def promoted(pipeline, tmp_path_factory) -> Seen:
    """Under the amended plan (fit on 1991, sequester 1992) the candidate passes; B promotes it."""
    repo = pipeline.repo.copy(tmp_path_factory.mktemp("promoted"))
    alert = repo.alert("calibration_drift", "1991")
    repo.run("clinval", "review", "approve", alert["id"], "--reason", "O/E confirmed on chart review", user="alice")
    repo.set_plan(**AMENDED)
    repo.revalidate()
    repo.record()
    candidate = repo.candidate()
    cid = candidate["id"]
    same = repo.run("clinval", "model", "promote", cid, "--reason", "mine", user="alice", check=False)
    machine = repo.run("clinval", "model", "promote", cid, "--reason", "auto", user="pipeline", check=False)
    out = repo.run("clinval", "model", "promote", cid, "--reason", "criteria met", user="bob")
    twice = repo.run("clinval", "model", "promote", cid, "--reason", "again", user="bob", check=False)
    entries = [json.loads(line) for line in (repo.path / "audit" / "ledger.jsonl").read_text().splitlines()]
    verify = repo.run("clinval", "audit", "verify", "--deep", check=False)
    return Seen(repo, {"alert": alert, "candidate": candidate, "same": same, "machine": machine, "out": out,
                       "twice": twice, "entries": entries, "verify": verify})


@pytest.fixture(scope="module")
def locked_features(promoted) -> Seen:
    """After the promotion, the plan locks a feature list the model does not have: refused."""
    repo = promoted.repo
    plan = yaml.safe_load((repo.path / "params" / "pccp.yaml").read_text())
    repo.set_plan(locked_features=[f for f in plan["locked"]["features"] if f != "stroke"])
    repo.revalidate()
    repo.record()
    verify = repo.run("clinval", "audit", "verify", "--deep", check=False)
    repo.run("clinval", "report", "pccp")
    return Seen(repo, {
        "record": repo.json("reports/04_revalidation.json"),
        "manifest": repo.json("models/candidates/manifest.json"),
        "verify": verify,
        "promoted": sorted((repo.path / "models" / "promoted").glob("*/model.joblib")),
        "candidates": sorted((repo.path / "models" / "candidates").glob("*/model.joblib")),
        "pccp": (repo.path / "reports" / "pccp_report.html").read_text(),
    })


def test_the_calibration_alert_for_the_1990s_fires(pipeline):
    alerts = pipeline.outputs["alerts"]
    fired = {a["period"] for a in alerts if a["trigger"] == "calibration_drift"}
    assert {"1991", "1992", "1993"} <= fired
    assert not fired & {"1988", "1989", "1990"}
    assert {a["id"] for a in alerts} <= {q["id"] for q in pipeline.outputs["queue"]}


def test_nothing_is_built_before_a_person_approves(pipeline):
    assert pipeline.outputs["candidates"] == {"candidates": [], "refusals": []}


def test_promotion_without_an_approval_in_the_ledger_is_refused(forged):
    # the forged approval passes the offline check at build time, so a candidate is built;
    # only the ledger can tell, and the next `audit record` drops the file from the cache
    candidate = forged.outputs["candidate"]
    assert candidate["decision"] == "promote" and candidate["approved_by"] == ["mallory"]
    refused = forged.outputs["promote"]
    assert refused.returncode == 2 and "NOT_IN_LEDGER" in refused.stderr
    assert forged.outputs["cache"] == []


def test_reviewer_a_approves_and_the_allowed_candidate_fails_on_the_sequestered_1993(approved):
    alert, candidate = approved.outputs["alert"], approved.outputs["candidate"]
    assert "approved" in approved.outputs["approve"].stdout and "Alice Reviewer (alice, key " in approved.outputs["approve"].stdout
    again = approved.outputs["again"]
    assert again.returncode == 2 and "DUPLICATE" in again.stderr
    assert candidate["modification"] == "recalibration" and candidate["alert_ids"] == [alert["id"]]
    assert candidate["approved_by"] == ["alice"] and [a["alert_id"] for a in candidate["approvals"]] == [alert["id"]]
    assert candidate["training_periods"] == SHIPPED["training_periods"]
    assert candidate["sequestered_periods"] == SHIPPED["sequestered_periods"]
    # mortality kept falling in 1993: recalibrating to 1991-92 still over-predicts there
    verdict = {c["criterion"]: c["passed"] for c in candidate["criteria"]}
    assert verdict["observed/expected"] is False and candidate["decision"] == "reject"
    refused = approved.outputs["promote"]
    assert refused.returncode == 2
    assert "CRITERIA_FAILED" in refused.stderr and "observed/expected" in refused.stderr


def test_a_candidate_that_passes_is_promoted_only_by_a_second_person(promoted):
    candidate = promoted.outputs["candidate"]
    assert candidate["decision"] == "promote", candidate["reasons"]
    assert candidate["approved_by"] == ["alice"]
    same = promoted.outputs["same"]
    assert same.returncode == 2 and "SAME_PERSON" in same.stderr and "different person" in same.stderr
    machine = promoted.outputs["machine"]
    assert machine.returncode == 2 and "UNAUTHORIZED" in machine.stderr and "machine identity" in machine.stderr
    assert "promoted" in promoted.outputs["out"].stdout
    twice = promoted.outputs["twice"]
    assert twice.returncode == 2 and "already promoted" in twice.stderr

    entries = promoted.outputs["entries"]
    version = [e for e in entries if e["kind"] == "model_version"][-1]
    assert version["body"]["candidate_id"] == candidate["id"]
    assert version["body"]["retraining_approved_by"] == ["alice"] and version["body"]["promoted_by"] == "bob"
    esig = entries[version["body"]["promotion_esig_seq"]]
    assert esig["body"]["meaning"] == "approved" and esig["body"]["printed_name"] == "Bob Quality"
    retrain = entries[version["body"]["retrain_seq"]]
    assert retrain["kind"] == "retrain" and retrain["body"]["decision"] == "promote"
    assert retrain["body"]["approvals"] == candidate["approvals"]
    assert promoted.outputs["verify"].returncode == 0, promoted.outputs["verify"].stdout


def test_a_modification_the_plan_does_not_allow_is_refused(locked_features):
    record = locked_features.outputs["record"]
    assert record["candidates"] == []
    reasons = " ".join(r["reason"] for r in locked_features.outputs["manifest"]["refusals"])
    assert "locks the feature list" in reasons
    assert "locks the feature list" in json.dumps(record["values"]["refusals"])


def test_the_ledger_still_verifies_after_everything(locked_features):
    verified = locked_features.outputs["verify"]
    assert verified.returncode == 0, verified.stdout
    # the promoted model is kept although the candidates folder was rebuilt since
    assert len(locked_features.outputs["promoted"]) == 1 and not locked_features.outputs["candidates"]
    page = locked_features.outputs["pccp"]
    assert "Alice Reviewer" in page and "Bob Quality" in page and "PROMOTE" in page and "refused" in page.lower()
    assert "two people, every criterion met" in page
