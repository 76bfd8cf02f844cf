"""The scoring service in process: answers, 422s that name record and field, the model in force."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from clinval import model as model_lib
from clinval.cli import main
from clinval.cli.serve import build_service
from clinval.predlog import read_wal
from clinval.serve import compile_model
from clinval.serve.app import create_app
from clinval.serve.model_in_force import ServeRefused


@contextmanager
def serving(live):
    service = build_service(study_path=str(live.root / "params" / "study.yaml"), log_dir=live.log_dir, root=live.root,
                            signer=live.signer, ledger_path=live.ledger, checkpoint_dir=live.root / "audit" / "checkpoints",
                            keys_dir=live.root / "audit" / "keys")
    with TestClient(create_app(service)) as client:
        yield client, service


def test_answers_with_the_locked_model_and_logs_before_answering(live_root, study_records, locked_model):
    pipeline, _ = locked_model
    records = study_records[:25]
    with serving(live_root) as (client, service):
        response = client.post("/v1/predict", json={"records": records})
        assert response.status_code == 200
        body = response.json()
        # the answer is already durable: its line is in the open WAL segment
        [wal] = (live_root.log_dir / "wal").glob("*.jsonl")
        logged = read_wal(wal).requests
        assert [r["r"] for r in logged] == [body["request_id"]]
        assert logged[0]["risk"] == [p["risk"] for p in body["predictions"]]
    expected = compile_model(pipeline).score(records).risk
    assert [p["risk"] for p in body["predictions"]] == expected.tolist()
    assert body["model"]["id"] == "locked"
    assert [p["prediction_id"] for p in body["predictions"]] == [f"{body['request_id']}-{i}" for i in range(25)]


def test_health_names_the_model_and_the_verified_ledger_head(live_root):
    from clinval.ledger import verify

    with serving(live_root) as (client, _):
        health = client.get("/healthz").json()
    result = verify(live_root.ledger)
    assert health["status"] == "ok"
    assert health["ledger"] == {"head": result.head, "size": result.size}
    recorded = [o for e in live_root.open_ledger().entries() if e.kind == "pipeline_run" for o in e.body["outputs"]]
    assert health["model"]["sha256"] == recorded[0]["sha256"] and health["model"]["path"] == "models/locked"


def test_pass_through_ids_are_echoed_and_logged(live_root, study_records):
    records = [{**study_records[0], "record_id": "adm-1", "patient_id": 4711}, study_records[1]]
    with serving(live_root) as (client, _):
        body = client.post("/v1/predict", json={"records": records}).json()
    assert body["predictions"][0]["record_id"] == "adm-1" and body["predictions"][0]["patient_id"] == "4711"
    assert "record_id" not in body["predictions"][1]


@pytest.mark.parametrize(
    ("change", "record", "field", "words"),
    [
        (lambda r: r.pop("age"), 3, "age", "Field required"),
        (lambda r: r.update(age="sixty"), 3, "age", "valid number"),
        (lambda r: r.update(age=True), 3, "age", "valid number"),
        (lambda r: r.update(sex=1), 3, "sex", "valid string"),
        (lambda r: r.update(hosp="y"), 3, "hosp", "never_features"),
        (lambda r: r.update(blood_type="A"), 3, "blood_type", "Extra inputs"),
    ],
    ids=["missing-feature", "non-numeric-age", "boolean-age", "number-for-category", "never-feature", "unknown-field"],
)
def test_bad_records_get_422_naming_record_and_field(live_root, study_records, change, record, field, words):
    records = [dict(r) for r in study_records[:5]]
    change(records[record])
    with serving(live_root) as (client, service):
        response = client.post("/v1/predict", json={"records": records})
        assert response.status_code == 422
        problem = response.json()["detail"][0]
        assert (problem["record"], problem["field"]) == (record, field)
        assert words in problem["message"] and f"record {record}, field {field!r}" in response.json()["message"]
        assert service.log.stats.records_logged == 0


def test_request_size_limits(live_root, study_records):
    with serving(live_root) as (client, _):
        assert client.post("/v1/predict", json={"records": []}).status_code == 422
        assert client.post("/v1/predict", json={"records": study_records[:1] * 10_001}).status_code == 422
        assert client.post("/v1/predict", json={"records": study_records[:1] * 10_000}).status_code == 200
        assert client.post("/v1/predict", content=b"{not json").status_code == 422


def test_missing_values_and_unseen_categories_are_scored_and_counted(live_root, study_records, locked_model, monica):
    pipeline, _ = locked_model
    import pandas as pd

    records = [{**study_records[0], "age": None, "smstat": "vaper"}, {**study_records[1], "sex": None}]
    with serving(live_root) as (client, _):
        body = client.post("/v1/predict", json={"records": records}).json()
        metrics = client.get("/metrics").text
    frame = pd.DataFrame(records).astype({"age": float})
    expected = model_lib.score(pipeline, frame, monica.schema)
    np.testing.assert_allclose([p["risk"] for p in body["predictions"]], expected, rtol=0, atol=1e-12)
    assert 'clinval_unseen_categories_total{feature="smstat"} 1.0' in metrics


def test_a_promoted_model_is_in_force_when_the_ledger_says_so(live_root, study_records, locked_model):
    from clinval._io import sha256_file
    from clinval.revalidation import RecalibratedModel

    pipeline, card = locked_model
    promoted = RecalibratedModel(pipeline, intercept=-0.5, slope=0.9)
    folder = live_root.root / "models" / "promoted" / "recalibration-x"
    folder.mkdir(parents=True)
    import joblib

    joblib.dump(promoted, folder / "model.joblib")
    path = (folder / "model.joblib").relative_to(live_root.root).as_posix()
    from clinval.ledger import register_key
    from clinval.signing import Signer

    ledger = live_root.open_ledger()
    quality = Signer.ephemeral(user_id="qa", printed_name="Quinn Assurance")  # a promotion is a person's signature
    register_key(ledger, signer=quality)
    ledger.append(kind="model_version", signer=quality, body={
        "candidate_id": "recalibration-x", "model_file": {"path": path, "sha256": sha256_file(folder / "model.joblib")}})
    with serving(live_root) as (client, _):
        body = client.post("/v1/predict", json={"records": study_records[:10]}).json()
    assert body["model"]["id"] == "recalibration-x"
    expected = compile_model(promoted).score(study_records[:10]).risk
    assert [p["risk"] for p in body["predictions"]] == expected.tolist()


def _refusal(live) -> str:
    with pytest.raises(ServeRefused) as refused:
        build_service(study_path=str(live.root / "params" / "study.yaml"), log_dir=live.log_dir, root=live.root,
                      signer=live.signer, ledger_path=live.ledger, checkpoint_dir=live.root / "audit" / "checkpoints",
                      keys_dir=live.root / "audit" / "keys")
    return str(refused.value)


def test_refuses_a_model_that_differs_from_its_ledger_digest(live_root):
    card = live_root.root / "models" / "locked" / "card.json"
    card.write_text(card.read_text().replace('"n_train"', '"n_train" ', 1))
    assert "not the model the ledger records" in _refusal(live_root)


def test_refuses_a_ledger_that_does_not_verify(live_root):
    lines = live_root.ledger.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"models/locked", b"models/lockeD")
    live_root.ledger.write_bytes(b"\n".join(lines))
    assert "does not verify" in _refusal(live_root)


def test_refuses_when_the_ledger_records_no_model(tmp_path, locked_model):
    from live_helpers import make_live_root

    pipeline, card = locked_model
    live = make_live_root(tmp_path, pipeline=pipeline, card=card)
    (live.root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    live.ledger.unlink()
    for f in (live.root / "audit" / "checkpoints").glob("*"):
        f.unlink()
    from clinval.ledger import record_run

    record_run(live.open_ledger(), signer=live.signer(), root=live.root)
    assert "records no model" in _refusal(live)


def test_cli_refusal_is_one_paragraph_and_exit_status_2(live_root, monkeypatch):
    from live_helpers import PASSPHRASE

    (live_root.root / "models" / "locked" / "model.joblib").write_bytes(b"not the model")
    monkeypatch.chdir(live_root.root)
    monkeypatch.setenv("CLINVAL_HOME", str(live_root.home))
    monkeypatch.setenv("CLINVAL_PASSPHRASE", PASSPHRASE)
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: refusing to start:") and "Traceback" not in result.output
