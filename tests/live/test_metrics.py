"""Metrics: the records' monitored metrics, the service's /metrics, and the textfile export."""

from __future__ import annotations

import json

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from clinval.cli import main
from clinval.metrics import records_metrics

RECORD = {
    "alerts": [{"id": "calibration_drift-1991-x", "kind": "drift"}, {"id": "input_drift-1992-y", "kind": "drift"}],
    "values": {
        "performance": [
            {"metric": "O/E", "period": "reference", "value": 1.0, "lower": 0.9, "upper": 1.1, "status": "ok"},
            {"metric": "O/E", "period": "1991", "value": 0.78, "lower": 0.64, "upper": 0.96, "status": "ok"},
            {"metric": "O/E", "period": "1992", "value": None, "lower": None, "upper": None, "status": "no labels"},
            {"metric": "AUROC", "period": "1991", "value": 0.71, "lower": 0.64, "upper": 0.77, "status": "ok"},
        ],
        "label_free_estimates": [{"metric": "AUROC", "period": "1992", "value": 0.68, "status": "ok"}],
        "feature_drift": [{"period": "1991", "feature": "age", "drifted": True}, {"period": "1991", "feature": "sex", "drifted": True},
                          {"period": "1992", "feature": "age", "drifted": False}],
    },
}
FAIRNESS = {"alerts": [{"id": "fairness_gap-1993-z", "kind": "fairness"}]}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _write_records(root):
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "02_drift_analysis.json").write_text(json.dumps(RECORD))
    (root / "reports" / "03_fairness_audit.json").write_text(json.dumps(FAIRNESS))
    (root / "audit" / "approvals").mkdir(parents=True, exist_ok=True)
    (root / "audit" / "approvals" / "input_drift-1992-y.json").write_text(json.dumps({"alert_id": "input_drift-1992-y"}))


def test_records_metrics_are_the_records_numbers_labelled_by_period(tmp_path):
    _write_records(tmp_path)
    families = {f.name: f for f in records_metrics(reports_dir=tmp_path / "reports", approvals_dir=tmp_path / "audit" / "approvals")}
    values = {(f, tuple(s.labels.values())): s.value for f, family in families.items() for s in family.samples}
    assert values[("clinval_observed_expected", ("1991",))] == 0.78
    assert values[("clinval_observed_expected_lower", ("1991",))] == 0.64
    assert values[("clinval_auroc_upper", ("1991",))] == 0.77
    assert ("clinval_observed_expected", ("reference",)) not in values and ("clinval_observed_expected", ("1992",)) not in values
    assert values[("clinval_estimated_auroc", ("1992",))] == 0.68
    assert values[("clinval_drifted_features", ("1991",))] == 2 and values[("clinval_drifted_features", ("1992",))] == 0
    # one of the two drift alerts has a signed decision; the fairness alert has none
    assert values[("clinval_open_alerts", ("drift",))] == 1 and values[("clinval_open_alerts", ("fairness",))] == 1


def test_no_records_yet_gives_no_numbers_not_an_error(tmp_path):
    families = records_metrics(reports_dir=tmp_path / "reports")
    assert [f.name for f in families] == ["clinval_open_alerts"]


def test_metrics_export_writes_records_and_log_state(live_root, monkeypatch):
    _write_records(live_root.root)
    monkeypatch.chdir(live_root.root)
    out = live_root.root / "textfile" / "clinval.prom"
    result = CliRunner().invoke(main, ["metrics", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = _samples(out.read_text())
    assert samples[("clinval_observed_expected", (("period", "1991"),))] == 0.78
    assert samples[("clinval_ledger_sealed_predictions", ())] == 0 and samples[("clinval_log_open_records", ())] == 0
