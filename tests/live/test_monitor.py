"""`clinval monitor`: sealed predictions become the study's next production period, once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from live_helpers import PASSPHRASE, make_live_root, monica_study

from clinval import data
from clinval.cli import main
from clinval.predlog import LogSettings, PredictionLog, encode_request


@pytest.fixture
def monthly(tmp_path, monica, locked_model, monkeypatch):
    """A study of MONICA's patients re-dated to the twelve months before this one, as a
    folder of Parquet files; a service log with predictions made this month."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    this = now.to_period("M")
    frame = pd.concat([monica.reference, monica.production], ignore_index=True)
    months = [this - 12 + (i * 12) // len(frame) for i in range(len(frame))]
    raw = pd.DataFrame({"rownames": frame["record_id"].astype(str), "hosp": "y",
                        "outcome": frame["label"].map({1: "dead", 0: "live"}).astype(object),
                        **{c: frame[c].astype(object) for c in monica.schema.features},
                        "admitted": [m.start_time.strftime("%Y-%m-%d") for m in months]})
    study = {**monica_study(), "source": {"path": "data/study"}, "time": {"column": "admitted"},
             "periods": {"rule": "month", "reference": {"from": str(this - 12), "to": str(this - 7)},
                         "production": {"from": str(this - 6), "to": str(this - 1)}}}
    pipeline, card = locked_model
    live = make_live_root(tmp_path, pipeline=pipeline, card=card, study=study)
    (live.root / "data" / "study").mkdir(parents=True)
    raw.to_parquet(live.root / "data" / "study" / "history.parquet", index=False)
    monkeypatch.chdir(live.root)
    monkeypatch.setenv("CLINVAL_HOME", str(live.home))
    monkeypatch.setenv("CLINVAL_PASSPHRASE", PASSPHRASE)
    log = PredictionLog(directory=live.log_dir, root=live.root, ledger=live.open_ledger(), signer=live.signer(),
                        model_id="locked", model_sha256="ab" * 32, numeric=monica.schema.numeric,
                        categorical=monica.schema.categorical, settings=LogSettings())
    log.start()
    rows = frame.head(60)
    t = int(datetime.now(UTC).timestamp() * 1e6)
    for i, (_, row) in enumerate(rows.iterrows()):
        inputs = {c: [None if pd.isna(row[c]) or (c == "age" and i % 7 == 0) else row[c]] for c in monica.schema.features}
        log.submit(encode_request(request_id=f"q{i}", time_us=t + i, risk=[0.2], inputs=inputs, unseen=[()],
                                  pass_through={"record_id": [f"live-{i}"]}), records=1).result(timeout=60)
    # a repeat prediction of a record: only the first counts
    log.submit(encode_request(request_id="again", time_us=t + 100, risk=[0.3], inputs=inputs, unseen=[()],
                              pass_through={"record_id": ["live-0"]}), records=1).result(timeout=60)
    log.close()
    return live, this


def _monitor(*args):
    return CliRunner().invoke(main, ["monitor", *args], catch_exceptions=False)


def test_sealed_predictions_become_the_next_period_once(monthly):
    live, this = monthly
    outcomes = pd.DataFrame({"record_id": [f"live-{i}" for i in range(60)], "outcome": ["dead", "live", "live"] * 20})
    outcomes.to_csv(live.root / "o.csv", index=False)
    assert CliRunner().invoke(main, ["outcomes", "add", "o.csv"]).exit_code == 0
    through = (datetime.now(UTC) + timedelta(days=40)).strftime("%Y-%m-%d")
    first = _monitor("--no-repro", "--through", through)
    assert first.exit_code == 0, first.output
    written = live.root / "data" / "study" / f"live-{this}.parquet"
    rows = pd.read_parquet(written)
    assert len(rows) == 60 and (rows["outcome"] == "dead").sum() == 20 and set(rows["hosp"]) == {"y"}
    assert "1 prediction(s) left out: repeat predictions" in first.output
    study = yaml.safe_load((live.root / "params" / "study.yaml").read_text())
    assert study["periods"]["production"]["to"] == str(this)
    prepared = data.prepare(data.study_from_params(study), root=live.root)
    assert prepared.periods[-1] == str(this) and prepared.metadata["n_production"][str(this)] == 60
    before = written.read_bytes(), (live.root / "params" / "study.yaml").read_bytes()
    again = _monitor("--no-repro", "--through", through)
    assert again.exit_code == 0 and "(unchanged)" in again.output
    assert (written.read_bytes(), (live.root / "params" / "study.yaml").read_bytes()) == before


def test_a_period_not_yet_over_waits_and_outcomes_label_it_later(monthly):
    live, this = monthly
    waiting = _monitor("--no-repro")
    assert waiting.exit_code == 0 and "60 prediction(s) left out: in a period not yet over" in waiting.output
    assert not list((live.root / "data" / "study").glob("live-*"))
    pd.DataFrame({"record_id": ["live-0", "live-1"], "outcome": ["dead", "live"]}).to_csv(live.root / "o.csv", index=False)
    assert CliRunner().invoke(main, ["outcomes", "add", "o.csv"]).exit_code == 0
    through = (datetime.now(UTC) + timedelta(days=40)).strftime("%Y-%m-%d")
    assert _monitor("--no-repro", "--through", through).exit_code == 0
    rows = pd.read_parquet(live.root / "data" / "study" / f"live-{this}.parquet").set_index("rownames")
    assert rows.loc["live-0", "outcome"] == "dead" and rows.loc["live-1", "outcome"] == "live"
    assert rows["outcome"].notna().sum() == 2


def test_a_single_file_source_is_refused_with_the_fix(live_root, monkeypatch):
    monkeypatch.chdir(live_root.root)
    (live_root.root / "raw").mkdir()
    (live_root.root / "raw" / "monica.csv").write_text("x\n")
    result = CliRunner().invoke(main, ["monitor", "--no-repro"])
    assert result.exit_code == 2 and "is a single file" in result.output


DVC_YAML = """stages:
  drift:
    cmd: {python} -c "{script}"
    deps: [data/study]
    outs: [reports/02_drift_analysis.json]
"""
# a stand-in for the drift stage: one alert per period whose data it sees (its id names the data digest)
SCRIPT = ("import json,glob,hashlib,pathlib; fs=sorted(glob.glob('data/study/live-*.parquet')); "
          "pathlib.Path('reports').mkdir(exist_ok=True); "
          "alerts=[dict(id='input_drift-'+f[16:-8]+'-'+hashlib.sha256(open(f,'rb').read()).hexdigest()[:10],kind='drift',"
          "period=f[16:-8],summary='stand-in') for f in fs]; "
          "open('reports/02_drift_analysis.json','w').write(json.dumps(dict(alerts=alerts)))")


def test_monitor_reruns_the_pipeline_records_it_and_exits_1_when_a_trigger_fired(monthly):
    live, this = monthly
    (live.root / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable, script=SCRIPT))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=live.root, check=True)
    through = (datetime.now(UTC) + timedelta(days=40)).strftime("%Y-%m-%d")
    fired = _monitor("--through", through)
    assert fired.exit_code == 1, fired.output
    assert f"ALERT input_drift-{this}-" in fired.output
    alerts = [e for e in live.open_ledger().entries() if e.kind == "drift_alert"]
    assert len(alerts) == 1 and alerts[0].body["period"] == str(this)
    quiet = _monitor("--through", through)
    assert quiet.exit_code == 0 and "0 new alerts" in quiet.output
    assert len([e for e in live.open_ledger().entries() if e.kind == "drift_alert"]) == 1
    report = json.loads((live.root / "reports" / "02_drift_analysis.json").read_text())
    assert len(report["alerts"]) == 1
