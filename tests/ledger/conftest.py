"""Fixtures for the ledger tests: an isolated key store and a standard signed ledger."""

from __future__ import annotations

import json
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

    seq 0  key_added     pipeline (genesis key)
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
    for user in ("pipeline", "alice", "bob"):
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
