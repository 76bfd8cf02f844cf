"""The ledger test harness: standard ledgers, attack cases and the review-gate workbench."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from clinval.ledger import Ledger, path_sha256, register_key, revoke_key
from clinval.signing import Signer, esign

FIXTURE_FILES = {
    "dvc.lock": b"schema: '2.0'\nstages: {}\n",
    "models/model.bin": b"locked model v1\n",
    "models/candidate.bin": b"candidate model c1\n",
    "reports/02_drift.json": b'{"alerts": []}\n',
    "data/review_queue/a1.parquet": b"review queue rows\n",
}


@pytest.fixture(autouse=True)
def isolated_key_store(tmp_path_factory, monkeypatch):
    """Point CLINVAL_HOME at a fresh directory: no test ever touches the real home."""
    home = tmp_path_factory.mktemp("clinval_home")
    monkeypatch.setenv("CLINVAL_HOME", str(home))
    monkeypatch.delenv("CLINVAL_PASSPHRASE", raising=False)
    monkeypatch.delenv("CLINVAL_USER", raising=False)
    return home


@dataclass
class StandardLedger:
    """A small ledger exercising every rule, built through the public API.

    seq 0  key_added     pipeline (genesis key, a machine identity)
    seq 1  key_added     alice
    seq 2  key_added     bob
    seq 3  pipeline_run  refers to models/model.bin and reports/02_drift.json
    seq 4  drift_alert   a1
    seq 5  data_pull     a1 -> data/review_queue/a1.parquet (n_records 12)
    seq 6  esig          alice APPROVED seq 4
    seq 7  key_revoked   bob's key, by bob
    seq 8  retrain       c1 -> models/candidate.bin
    seq 9  esig          alice REVIEWED reports/02_drift.json

    ``early-checkpoint.json`` in the root is the checkpoint taken after seq 5.
    """

    root: Path
    ledger: Ledger
    signers: dict[str, Signer]
    kept_checkpoint: Path | None = None
    kept_trust: Path | None = None

    @property
    def path(self) -> Path:
        return self.ledger.path

    @property
    def checkpoint(self) -> Path:
        return self.root / "audit" / "checkpoints" / "latest.json"

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().split(b"\n")[:-1]


def build_standard_ledger(root: Path) -> StandardLedger:
    for relative, data in FIXTURE_FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    ledger = Ledger(
        path=root / "audit" / "ledger.jsonl",
        checkpoint_dir=root / "audit" / "checkpoints",
        keys_dir=root / "audit" / "keys",
    )
    signers = {
        "pipeline": Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline"),
        "alice": Signer.ephemeral(user_id="alice", printed_name="Alice Smith"),
        "bob": Signer.ephemeral(user_id="bob", printed_name="Bob Jones"),
        "mallory": Signer.ephemeral(user_id="mallory", printed_name="Mallory"),
    }
    pipeline, alice, bob = signers["pipeline"], signers["alice"], signers["bob"]
    register_key(ledger, signer=pipeline, role="machine")
    for user in ("alice", "bob"):
        register_key(ledger, signer=signers[user])

    def ref(relative: str) -> dict[str, str]:
        return {"path": relative, "sha256": path_sha256(root / relative)}

    ledger.append(
        kind="pipeline_run",
        body={
            "dvc_lock": ref("dvc.lock"),
            "outputs": [ref("models/model.bin")],
            "reports": [ref("reports/02_drift.json")],
        },
        signer=pipeline,
    )
    alert = ledger.append(
        kind="drift_alert",
        body={"alert_id": "a1", "period": "1990", "summary": "age distribution shifted"},
        signer=pipeline,
    )
    ledger.append(
        kind="data_pull",
        body={"alert_id": "a1", "queue_file": ref("data/review_queue/a1.parquet"), "n_records": 12},
        signer=pipeline,
    )
    # A verifier who looked at the ledger when it had 6 entries kept this checkpoint.
    shutil.copy(root / "audit" / "checkpoints" / "latest.json", root / "early-checkpoint.json")
    esign(
        ledger,
        signer=alice,
        target_ref=str(alert.seq),
        target_digest=alert.digest,
        meaning="approved",
        reason="drift confirmed; approve review",
    )
    revoke_key(ledger, key_id=bob.key_id, reason="left the organisation", signer=bob)
    ledger.append(
        kind="retrain",
        body={"candidate_id": "c1", "model_file": ref("models/candidate.bin"), "modification": "recalibrate"},
        signer=pipeline,
    )
    report = ref("reports/02_drift.json")
    esign(
        ledger,
        signer=alice,
        target_ref=report["path"],
        target_digest=report["sha256"],
        meaning="reviewed",
        reason="read the drift record",
    )
    return StandardLedger(root=root, ledger=ledger, signers=signers)


@pytest.fixture
def standard(tmp_path) -> StandardLedger:
    """The standard ledger in a fresh repository root."""
    return build_standard_ledger(tmp_path)


def load_case(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# -- the review gate's workbench -------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]
PASSPHRASES = {
    "pipeline": "pipeline passphrase",
    "alice": "alice passphrase",
    "bob": "bob passphrase",
    "carol": "carol passphrase",
}
PRINTED_NAMES = {"alice": "Alice Reviewer", "bob": "Bob Quality", "carol": "Carol Clinician"}


def _alert(name: str, kind: str, trigger: str, period: str, modification: str | None) -> dict:
    alert_id = f"{trigger}-{period}-{name * 10}"
    return {"id": alert_id, "kind": kind, "trigger": trigger, "period": period,
            "summary": f"{trigger} fired for {period}", "modification": modification, "n_records": 12,
            "queue_file": f"data/review_queue/{alert_id}.parquet", "evidence": {}}


GATE_ALERTS = {
    "A1": _alert("a", "drift", "calibration_drift", "1991", "recalibration"),
    "A2": _alert("b", "drift", "calibration_drift", "1992", "recalibration"),
    "A3": _alert("c", "drift", "calibration_drift", "1993", "recalibration"),
    "F1": _alert("d", "fairness", "fairness_gap", "1993", None),
}
PASSING = [
    {"criterion": "AUROC non-inferiority", "requirement": "lower 95% bound > -0.02", "result": "0.001", "passed": True},
    {"criterion": "observed/expected", "requirement": "95% CI of O/E includes 1", "result": "1.003", "passed": True},
]
FAILING = [PASSING[0], {**PASSING[1], "result": "0.739 (95% CI 0.584 to 0.935)", "passed": False}]


def _parsed(line: bytes) -> dict | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class _KeyStore:
    """``store[user]``: that user's signer, unlocked from the workbench's key store."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __getitem__(self, user: str) -> Signer:
        from clinval.signing import load_signer

        return load_signer(user, passphrase=PASSPHRASES[user], home=self.home)


@dataclass
class GateWorkbench:
    """A small repository run through the review gate with the real command line.

    Built once (:func:`gate_template`) and copied for each use: the pipeline's record of
    four alerts (A1-A3 calibration drift, F1 a fairness gap), keys for alice, bob and
    carol (persons) in a key store, alice's approval of A1 and bob's of A2, and a
    revalidation record with two candidates built from alice's approval:
    ``recalibration-pass`` (every criterion passed) and ``recalibration-fail``
    (observed/expected failed), both recorded by the pipeline.
    """

    root: Path
    home: Path
    kept_checkpoint: Path | None = None
    kept_trust: Path | None = None

    @property
    def path(self) -> Path:
        return self.root / "audit" / "ledger.jsonl"

    @property
    def signers(self) -> _KeyStore:
        return _KeyStore(self.home)

    @property
    def ledger(self) -> Ledger:
        return Ledger(path=self.path, checkpoint_dir=self.root / "audit" / "checkpoints",
                      keys_dir=self.root / "audit" / "keys")

    @property
    def approvals(self) -> Path:
        return self.root / "audit" / "approvals"

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().split(b"\n")[:-1]

    def entries(self) -> list[dict]:
        """The lines that parse as JSON (an attack may have appended one that does not)."""
        return [entry for entry in map(_parsed, self.lines()) if entry is not None]

    def alert_id(self, name: str) -> str:
        return GATE_ALERTS[name]["id"] if name in GATE_ALERTS else name

    def alert_seq(self, name: str) -> int:
        alert_id = self.alert_id(name)
        return next(e["seq"] for e in self.entries() if e["kind"].endswith("_alert") and e["body"]["alert_id"] == alert_id)

    def cli(self, *args: str, user: str | None = None, input: str | None = None):
        """Run ``clinval ARGS`` in the workbench as ``user`` (user id and passphrase from the environment)."""
        from click.testing import CliRunner

        from clinval.cli import main

        env = {"CLINVAL_HOME": str(self.home), "CLINVAL_USER": None, "CLINVAL_PASSPHRASE": None}
        if user is not None:
            env.update(CLINVAL_USER=user, CLINVAL_PASSPHRASE=PASSPHRASES[user])
        previous = Path.cwd()
        os.chdir(self.root)
        try:
            return CliRunner().invoke(main, list(args), env=env, input=input)
        finally:
            os.chdir(previous)

    def must(self, *args: str, user: str | None = None):
        result = self.cli(*args, user=user)
        assert result.exit_code == 0, f"clinval {' '.join(args)}: {result.output}"
        return result

    def write_revalidation(self, candidates: list[dict]) -> None:
        record = {"record": "04_revalidation", "title": "Revalidation", "status": "", "alerts": [],
                  "candidates": candidates, "values": {}, "inputs": {}}
        (self.root / "reports" / "04_revalidation.json").write_text(json.dumps(record, indent=1, sort_keys=True))
        (self.root / "reports" / "04_revalidation.html").write_text("<html><body>revalidation</body></html>\n")

    def candidate(self, cid: str, *, alerts: list[str], approvers: list[str], criteria: list[dict]) -> dict:
        """A candidate as record 04 lists it, built from the named alerts' decisions."""
        model_file = f"models/candidates/{cid}/model.joblib"
        (self.root / model_file).parent.mkdir(parents=True, exist_ok=True)
        (self.root / model_file).write_text(f"candidate {cid}\n")
        decisions = {e["body"]["target"]["seq"]: e for e in self.entries() if e["kind"] == "esig"}
        approvals = []
        for name in alerts:
            esig = decisions[self.alert_seq(name)]
            line = next(line for line in self.lines() if json.loads(line)["seq"] == esig["seq"])
            approvals.append({"alert_id": self.alert_id(name), "seq": esig["seq"],
                              "sha256": hashlib.sha256(line).hexdigest()})
        return {"id": cid, "modification": "recalibration", "alert_ids": [self.alert_id(a) for a in alerts],
                "approved_by": approvers, "approvals": approvals,
                "plan_sha256": hashlib.sha256((self.root / "params" / "pccp.yaml").read_bytes()).hexdigest(),
                "model_file": model_file, "training_data_digest": "d" * 64, "training_periods": ["1991", "1992"],
                "sequestered_periods": ["1993"], "decision": "promote" if all(c["passed"] for c in criteria) else "reject",
                "reasons": [], "criteria": criteria, "report": "reports/04_revalidation.html"}


def build_gate_workbench(root: Path, home: Path) -> GateWorkbench:
    """Build the workbench through the command line only (see :class:`GateWorkbench`)."""
    w = GateWorkbench(root=root, home=home)
    (root / "params").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "params" / "pccp.yaml", root / "params" / "pccp.yaml")
    (root / "reports").mkdir()
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    for alert in GATE_ALERTS.values():
        (root / alert["queue_file"]).parent.mkdir(parents=True, exist_ok=True)
        (root / alert["queue_file"]).write_bytes(b"review queue rows\n")
    for name, kind in (("02_drift_analysis", "drift"), ("03_fairness_audit", "fairness")):
        record = {"record": name, "title": name, "status": "", "values": {}, "inputs": {}, "candidates": [],
                  "alerts": [a for a in GATE_ALERTS.values() if a["kind"] == kind]}
        (root / "reports" / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
        (root / "reports" / f"{name}.html").write_text(f"<html><body>{name}</body></html>\n")
    w.must("audit", "record", "--create-signer", user="pipeline")
    for user, name in PRINTED_NAMES.items():
        w.must("keys", "init", "--id", user, "--name", name, user=user)
    w.must("review", "approve", w.alert_id("A1"), "--reason", "O/E confirmed on chart review", user="alice")
    w.must("review", "approve", w.alert_id("A2"), "--reason", "confirmed", user="bob")
    w.write_revalidation([
        w.candidate("recalibration-pass", alerts=["A1"], approvers=["alice"], criteria=PASSING),
        w.candidate("recalibration-fail", alerts=["A1"], approvers=["alice"], criteria=FAILING),
    ])
    w.must("audit", "record", user="pipeline")
    return w


@pytest.fixture(scope="session")
def gate_template(tmp_path_factory) -> GateWorkbench:
    base = tmp_path_factory.mktemp("gate_template")
    return build_gate_workbench(base / "repo", base / "home")


def copy_gate_workbench(template: GateWorkbench, target: Path) -> GateWorkbench:
    """A private copy of the workbench (repository and key store) under ``target``."""
    shutil.copytree(template.root, target / "repo")
    shutil.copytree(template.home, target / "home")
    return GateWorkbench(root=target / "repo", home=target / "home")


@pytest.fixture
def gate(gate_template, tmp_path, monkeypatch) -> GateWorkbench:
    """A fresh copy of the gate workbench; the library sees its key store."""
    w = copy_gate_workbench(gate_template, tmp_path)
    monkeypatch.setenv("CLINVAL_HOME", str(w.home))
    return w
