"""`record_run`: what a pipeline run produced goes in once, and only once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from clinval.ledger import ErrorCode, Ledger, LedgerError, path_sha256, record_run, verify
from clinval.signing import Signer

DVC_LOCK = """\
schema: '2.0'
stages:
  train:
    cmd: python -m clinval.model train
    deps:
    - path: data/prepared/reference.parquet
      md5: 0f1e2d3c4b5a69788796a5b4c3d2e1f0
      size: 10
    outs:
    - path: models/locked.bin
      md5: 11111111111111111111111111111111
      size: 6
  drift:
    cmd: papermill notebooks/02_drift_analysis.ipynb
    outs:
    - path: reports/02_drift.json
      md5: 22222222222222222222222222222222
    - path: data/review_queue
      md5: 33333333333333333333333333333333.dir
      nfiles: 1
"""

ALERT = {
    "id": "drift-1990-age",
    "kind": "drift",
    "trigger": "psi_fdr",
    "period": "1990",
    "summary": "age shifted (PSI 0.31, q < 0.01)",
    "queue_file": "data/review_queue/drift-1990-age.parquet",
    "n_records": 17,
}
CANDIDATE = {
    "id": "cand-1",
    "modification": "recalibration",
    "model_file": "models/candidates/cand-1.bin",
    "training_data_digest": "ab" * 32,
    "report": "reports/04_revalidation.json",
}


@pytest.fixture
def repo(tmp_path) -> Path:
    files = {
        "dvc.lock": DVC_LOCK,
        "models/locked.bin": "model\n",
        "data/review_queue/drift-1990-age.parquet": "rows\n",
        "reports/02_drift.json": json.dumps({"alerts": [ALERT]}),
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return tmp_path


@pytest.fixture
def ledger(repo) -> Ledger:
    return Ledger(path=repo / "audit" / "ledger.jsonl", checkpoint_dir=repo / "audit" / "checkpoints")


@pytest.fixture
def pipeline() -> Signer:
    return Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")


def _kinds(result) -> list[str]:
    return [entry.kind for entry in result.appended]


def test_first_record_starts_the_chain_with_the_signers_key(repo, ledger, pipeline):
    result = record_run(ledger, signer=pipeline, root=repo)

    assert _kinds(result) == ["key_added", "pipeline_run", "drift_alert", "data_pull"]
    genesis = result.appended[0]
    assert (genesis.seq, genesis.body["key_id"], genesis.key) == (0, pipeline.key_id, pipeline.key_id)
    assert verify(ledger.path, deep=True, root=repo).ok


def test_pipeline_run_records_lock_and_every_output(repo, ledger, pipeline):
    run = record_run(ledger, signer=pipeline, root=repo).appended[1]

    assert run.body["dvc_lock"] == {"path": "dvc.lock", "sha256": path_sha256(repo / "dvc.lock")}
    outputs = {out["path"]: out for out in run.body["outputs"]}
    assert outputs["models/locked.bin"] == {
        "md5": "11111111111111111111111111111111",
        "path": "models/locked.bin",
        "sha256": hashlib.sha256(b"model\n").hexdigest(),
        "stage": "train",
        "type": "file",
    }
    queue = outputs["data/review_queue"]
    assert (queue["type"], queue["md5"]) == ("dir", "33333333333333333333333333333333.dir")
    line = b"drift-1990-age.parquet\0" + hashlib.sha256(b"rows\n").hexdigest().encode() + b"\n"
    assert queue["sha256"] == hashlib.sha256(line).hexdigest()
    assert run.body["reports"] == [
        {"path": "reports/02_drift.json", "sha256": path_sha256(repo / "reports/02_drift.json")}
    ]


def test_alert_and_pull_carry_what_the_report_says(repo, ledger, pipeline):
    _, _, alert, pull = record_run(ledger, signer=pipeline, root=repo).appended

    assert alert.body["alert_id"] == ALERT["id"]
    assert (alert.body["trigger"], alert.body["period"], alert.body["summary"]) == (
        ALERT["trigger"],
        ALERT["period"],
        ALERT["summary"],
    )
    assert pull.body == {
        "alert_id": ALERT["id"],
        "n_records": 17,
        "queue_file": {
            "path": ALERT["queue_file"],
            "sha256": path_sha256(repo / ALERT["queue_file"]),
        },
    }


def test_recording_an_unchanged_run_appends_nothing(repo, ledger, pipeline):
    record_run(ledger, signer=pipeline, root=repo)
    size = len(ledger)

    again = record_run(ledger, signer=pipeline, root=repo)

    assert again.appended == () and len(ledger) == size


def test_changed_lock_appends_one_run_and_no_repeated_alerts(repo, ledger, pipeline):
    record_run(ledger, signer=pipeline, root=repo)
    (repo / "dvc.lock").write_text(DVC_LOCK.replace("size: 6", "size: 7"))

    assert _kinds(record_run(ledger, signer=pipeline, root=repo)) == ["pipeline_run"]


def test_new_fairness_alert_and_candidate_are_recorded_once(repo, ledger, pipeline):
    record_run(ledger, signer=pipeline, root=repo)
    fairness = {**ALERT, "id": "fair-1991-sex", "kind": "fairness", "queue_file": None}
    (repo / "reports/03_fairness.json").write_text(json.dumps({"alerts": [fairness]}))
    (repo / "reports/04_revalidation.json").write_text(json.dumps({"candidates": [CANDIDATE]}))
    (repo / CANDIDATE["model_file"]).parent.mkdir(parents=True)
    (repo / CANDIDATE["model_file"]).write_text("candidate\n")

    result = record_run(ledger, signer=pipeline, root=repo)

    assert _kinds(result) == ["fairness_alert", "retrain"]
    retrain = result.appended[1].body
    assert retrain["candidate_id"] == "cand-1"
    assert retrain["model_file"]["sha256"] == path_sha256(repo / CANDIDATE["model_file"])
    assert retrain["report"]["path"] == "reports/04_revalidation.json"
    assert record_run(ledger, signer=pipeline, root=repo).appended == ()


def test_missing_files_are_recorded_later_not_guessed(repo, ledger, pipeline):
    (repo / ALERT["queue_file"]).unlink()
    (repo / "reports/04_revalidation.json").write_text(json.dumps({"candidates": [CANDIDATE]}))

    first = record_run(ledger, signer=pipeline, root=repo)

    assert "data_pull" not in _kinds(first) and "retrain" not in _kinds(first)
    assert any("review queue" in warning for warning in first.warnings)
    assert any("model file" in warning for warning in first.warnings)
    (repo / ALERT["queue_file"]).write_text("rows\n")
    (repo / CANDIDATE["model_file"]).parent.mkdir(parents=True)
    (repo / CANDIDATE["model_file"]).write_text("candidate\n")
    assert _kinds(record_run(ledger, signer=pipeline, root=repo)) == ["data_pull", "retrain"]


def test_reports_without_alerts_or_with_bad_items_record_nothing_for_them(repo, ledger, pipeline):
    (repo / "reports/01_profile.json").write_text(json.dumps({"n": 4442}))
    (repo / "reports/05_odd.json").write_text(
        json.dumps({"alerts": [{"kind": "drift"}, {"id": "x", "kind": "weather"}], "candidates": "no"})
    )

    result = record_run(ledger, signer=pipeline, root=repo)

    assert _kinds(result).count("drift_alert") == 1
    assert len(result.warnings) == 2


def test_missing_lock_and_broken_report_are_clear_errors(repo, ledger, pipeline):
    (repo / "reports/09_broken.json").write_text("{not json")
    with pytest.raises(LedgerError, match="09_broken.json"):
        record_run(ledger, signer=pipeline, root=repo)
    (repo / "dvc.lock").unlink()
    with pytest.raises(LedgerError, match="dvc repro"):
        record_run(ledger, signer=pipeline, root=repo)
    assert not ledger.path.exists() or len(ledger) == 0


def test_another_machines_pipeline_key_is_not_silently_added(repo, ledger, pipeline):
    record_run(ledger, signer=pipeline, root=repo)
    other_machine = Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")
    (repo / "dvc.lock").write_text(DVC_LOCK + "\n")

    with pytest.raises(LedgerError, match="already has a registered key"):
        record_run(ledger, signer=other_machine, root=repo)


def test_swapped_output_fails_deep_verification(repo, ledger, pipeline):
    record_run(ledger, signer=pipeline, root=repo)
    (repo / "models/locked.bin").write_text("swapped\n")

    result = verify(ledger.path, deep=True, root=repo)

    assert (result.code, result.seq) == (ErrorCode.DIGEST_MISMATCH, 1)
    assert "models/locked.bin" in result.message


def test_the_recording_key_is_a_machine_identity(repo, ledger, pipeline):
    genesis = record_run(ledger, signer=pipeline, root=repo).appended[0]
    assert genesis.kind == "key_added" and genesis.body["role"] == "machine"
    assert [k.role for k in ledger.registered_keys()] == ["machine"]


def test_a_retrain_entry_holds_what_promotion_decides_on(repo, ledger, pipeline):
    facts = {
        "alert_ids": [ALERT["id"]], "approvals": [{"alert_id": ALERT["id"], "seq": 4, "sha256": "e" * 64}],
        "plan_sha256": "f" * 64, "training_periods": ["1991"], "sequestered_periods": ["1992"],
        "criteria": [{"criterion": "observed/expected", "requirement": "CI includes 1", "result": "1.0", "passed": True}],
        "decision": "promote",
    }
    candidate = {**CANDIDATE, **facts, "reasons": ["not recorded: prose"], "approved_by": ["alice"]}
    (repo / "reports/04_revalidation.json").write_text(json.dumps({"candidates": [candidate]}))
    (repo / CANDIDATE["model_file"]).parent.mkdir(parents=True)
    (repo / CANDIDATE["model_file"]).write_text("candidate\n")

    [retrain] = [e for e in record_run(ledger, signer=pipeline, root=repo).appended if e.kind == "retrain"]

    assert {name: retrain.body[name] for name in facts} == facts
    assert "reasons" not in retrain.body and "approved_by" not in retrain.body  # derived, not decided on
    assert record_run(ledger, signer=pipeline, root=repo).appended == ()
    # the same candidate judged again under another plan is recorded again: the latest verdict counts
    candidate["criteria"][0]["passed"], candidate["decision"] = False, "reject"
    (repo / "reports/04_revalidation.json").write_text(json.dumps({"candidates": [candidate]}))
    [again] = record_run(ledger, signer=pipeline, root=repo).appended
    assert again.kind == "retrain" and again.body["decision"] == "reject"


DVC3_LOCK = """\
schema: '2.0'
stages:
  train:
    cmd: train
    outs:
    - path: models/locked.bin
      hash: md5
      md5: {file}
      size: 6
    - path: data/review_queue
      hash: md5
      md5: {tree}
      nfiles: 1
"""


def test_an_output_changed_after_dvc_repro_is_not_recorded(repo, ledger, pipeline):
    from clinval.ledger._record import dvc_md5

    lock = DVC3_LOCK.format(file=dvc_md5(repo / "models/locked.bin"), tree=dvc_md5(repo / "data/review_queue"))
    (repo / "dvc.lock").write_text(lock)
    assert "pipeline_run" in _kinds(record_run(ledger, signer=pipeline, root=repo))
    (repo / "dvc.lock").write_text(lock.replace("size: 6", "size: 6 "))  # a new run, same outputs
    (repo / "data/review_queue/drift-1990-age.parquet").write_text("other rows\n")
    size = len(ledger)

    with pytest.raises(LedgerError) as refused:
        record_run(ledger, signer=pipeline, root=repo)

    assert "data/review_queue" in refused.value.message and "changed after `dvc repro`" in refused.value.message
    assert len(ledger) == size


def test_dvc_md5_is_the_md5_dvc_itself_records(tmp_path):
    import subprocess
    import sys

    import yaml

    from clinval.ledger._record import dvc_md5

    dvc = str(Path(sys.executable).parent / "dvc")
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "b.csv").write_text("b\n1\n")
    (tmp_path / "data" / "sub" / "a.txt").write_bytes(b"line\r\nwith crlf\r\n")
    (tmp_path / "single.bin").write_bytes(bytes(range(256)))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "add", "-q", "data", "single.bin"], cwd=tmp_path, check=True)
    for name in ("data", "single.bin"):
        recorded = yaml.safe_load((tmp_path / f"{name}.dvc").read_text())["outs"][0]["md5"]
        assert dvc_md5(tmp_path / name) == recorded
