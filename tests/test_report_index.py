"""reports/index.html: every record with its status, the alert counts and the monitored metrics."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from clinval import review
from clinval._io import sha256_file
from clinval.cli.report import report as report_cli
from clinval.ledger import Ledger, record_run, register_key
from clinval.report import (
    MONITORED_METRICS,
    alert_counts,
    collect_records,
    monitored_performance,
    performance_figure,
    write_index,
)
from clinval.signing import Signer

PERIODS = ("reference", "1991", "1992", "1993")
# (period, metric) -> value, lower, upper; 1993 calibration slope could not be estimated.
VALUES = {
    "AUROC": [(0.66, 0.60, 0.72), (0.71, 0.64, 0.77), (0.72, 0.65, 0.78), (0.78, 0.71, 0.84)],
    "O/E": [(1.02, 0.87, 1.20), (0.78, 0.64, 0.96), (0.78, 0.64, 0.97), (0.58, 0.46, 0.73)],
    "calibration slope": [(0.67, 0.45, 0.88), (0.80, 0.54, 1.07), (0.84, 0.57, 1.11), (None, None, None)],
    "Brier": [(0.16, 0.14, 0.18)] * 4,
}
ALERTS = [
    {"id": f"calibration_drift-{period}-{period}aa", "kind": "drift", "trigger": "calibration_drift", "period": period,
     "summary": f"{period}: O/E below 0.8", "modification": "recalibration", "n_records": 400,
     "queue_file": f"data/review_queue/calibration_drift-{period}-{period}aa.parquet", "evidence": {"metric": "O/E"}}
    for period in ("1991", "1992", "1993")
]
FAIRNESS_ALERT = {"id": "fairness_gap-1993-ffff", "kind": "fairness", "trigger": "fairness_gap", "period": "1993",
                  "summary": "1993: 1 flagged disparity.", "modification": None, "n_records": 400,
                  "queue_file": "data/review_queue/fairness_gap-1993-ffff.parquet", "evidence": {}}


def _performance_rows() -> list[dict]:
    # The record lists the reference period last here: the index must still put it first.
    order = [*PERIODS[1:], PERIODS[0]]
    rows = []
    for period in order:
        for metric, values in VALUES.items():
            value, lower, upper = values[PERIODS.index(period)]
            rows.append({"period": period, "metric": metric, "value": value, "lower": lower, "upper": upper,
                         "method": "test", "n": 400, "status": "ok" if value is not None else "insufficient data"})
    return rows


def _write_record(reports: Path, name: str, **content) -> None:
    record = {"record": name, "title": name, "status": f"{name}: one-line status", "alerts": [], "candidates": [],
              "values": {}, "inputs": {}, **content}
    (reports / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    (reports / f"{name}.html").write_text(f"<html><body>{name}</body></html>\n")


@pytest.fixture
def reports(tmp_path) -> Path:
    reports = tmp_path / "reports"
    reports.mkdir()
    _write_record(reports, "01_reference_profile")
    _write_record(reports, "02_drift_analysis", alerts=ALERTS, values={"performance": _performance_rows()})
    _write_record(reports, "03_fairness_audit", alerts=[FAIRNESS_ALERT])
    return reports


@pytest.fixture
def approvals(tmp_path, reports, monkeypatch) -> Path:
    """alice approves the 1991 alert and rejects the 1992 one; both are signed in a ledger."""
    monkeypatch.setenv("CLINVAL_HOME", str(tmp_path / "home"))
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    for alert in [*ALERTS, FAIRNESS_ALERT]:
        (tmp_path / alert["queue_file"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / alert["queue_file"]).write_bytes(b"rows\n")
    ledger = Ledger(path=tmp_path / "audit" / "ledger.jsonl")
    record_run(ledger, signer=Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline"), root=tmp_path)
    alice = Signer.ephemeral(user_id="alice", printed_name="Alice Smith")
    register_key(ledger, signer=alice)
    folder = tmp_path / "audit" / "approvals"
    for alert, decision in ((ALERTS[0], "approved"), (ALERTS[1], "rejected")):
        review.decide(ledger=ledger, signer=alice, alert=alert, decision=decision, reason="chart review", approvals_dir=folder)
    return folder


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


def _text(node) -> str:
    return re.sub(r"\s+", " ", node.get_text(" ")).strip()


def test_every_record_is_linked_with_its_status_and_digests(reports, tmp_path):
    out = write_index(reports_dir=reports, out=reports / "index.html")
    rows = _soup(out).find("table").find("tbody").find_all("tr")
    assert [row.find("a")["href"] for row in rows] == [f"{n}.html" for n in
                                                      ("01_reference_profile", "02_drift_analysis", "03_fairness_audit")]
    drift = _text(rows[1])
    assert "02_drift_analysis: one-line status" in drift and "3 alerts" in drift and "alert(s)" not in drift
    assert sha256_file(reports / "02_drift_analysis.json") in drift and sha256_file(reports / "02_drift_analysis.html") in drift


def test_alert_counts_per_record_and_open_against_decided(reports, approvals):
    out = write_index(reports_dir=reports, out=reports / "index.html", approvals_dir=approvals)
    line = "Alerts: 3 in Drift analysis, 1 in Fairness audit (4 in all); decided 2 (1 approved, 1 rejected), open 2."
    assert line in _text(_soup(out))


def test_without_approvals_every_alert_is_open(reports):
    counts = alert_counts(collect_records(reports), approvals=[])
    assert (counts.approved, counts.rejected, counts.open) == (0, 0, 4)


def test_a_forged_approval_file_is_not_counted_as_a_decision(reports, approvals):
    path = approvals / f"{ALERTS[1]['id']}.json"
    forged = json.loads(path.read_text())
    forged["decision"] = "approved"  # the signed line says rejected
    path.write_text(json.dumps(forged))
    counts = alert_counts(collect_records(reports), approvals=review.read_approvals(approvals))
    assert (counts.approved, counts.rejected, counts.open, counts.invalid) == (1, 0, 3, (ALERTS[1]["id"],))
    assert f"failing their signature check (counted open): {ALERTS[1]['id']}" in counts.sentence()


def test_no_alerts_say_so(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    _write_record(reports, "01_reference_profile")
    text = _text(_soup(write_index(reports_dir=reports, out=reports / "index.html")))
    assert "No alerts in any record." in text
    assert "No monitored performance yet: 02_drift_analysis.json is missing" in text


def test_monitored_performance_puts_the_reference_first_and_keeps_only_the_monitored_metrics(reports):
    record = json.loads((reports / "02_drift_analysis.json").read_text())
    frame = monitored_performance(record)
    assert list(pd.unique(frame["period"])) == list(PERIODS)
    assert set(frame["metric"]) == set(MONITORED_METRICS)
    assert list(frame[frame["period"] == "1991"]["metric"]) == list(MONITORED_METRICS)
    row = frame[(frame["period"] == "1993") & (frame["metric"] == "calibration slope")].iloc[0]
    assert row["status"] == "insufficient data"


def test_the_figure_draws_one_ci_bar_per_estimated_period_and_marks_alert_periods(reports):
    frame = monitored_performance(json.loads((reports / "02_drift_analysis.json").read_text()))
    fig = performance_figure(frame, alert_periods={"O/E": ["1991", "1992"]})
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes) == list(MONITORED_METRICS)
    for metric, ax in axes.items():
        estimated = [v for v in VALUES[metric] if v[0] is not None]
        points = sorted(float(line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "o")
        assert points == sorted(v[0] for v in estimated)
        bars = [c for c in ax.collections]  # one error bar collection per point
        assert len(bars) == len(estimated)
    red = [line for line in axes["O/E"].lines if line.get_marker() == "o" and line.get_color() == "#a50021"]
    assert sorted(float(line.get_ydata()[0]) for line in red) == [0.78, 0.78]
    auroc_reference = [line for line in axes["AUROC"].lines if line.get_linestyle() == "--"]
    assert [float(line.get_ydata()[0]) for line in auroc_reference] == [0.66]


def test_the_dashboard_is_an_embedded_png_with_a_table_of_the_same_numbers(reports):
    soup = _soup(write_index(reports_dir=reports, out=reports / "index.html"))
    [img] = soup.find_all("img")
    assert img["src"].startswith("data:image/png;base64,")
    png = base64.b64decode(img["src"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in png
    table = soup.find("caption", string=re.compile("Value \\(95% CI\\) per period")).find_parent("table")
    header = [_text(th) for th in table.find_all("th")]
    assert [h.lower() for h in header] == ["metric", *PERIODS]  # headers read "Metric", "Reference", "1991"
    rows = {_text(tr.find("td")): [_text(td) for td in tr.find_all("td")[1:]] for tr in table.find("tbody").find_all("tr")}
    assert rows["O/E"] == ["1.02 (0.87 to 1.20)", "0.78 (0.64 to 0.96)", "0.78 (0.64 to 0.97)", "0.58 (0.46 to 0.73)"]
    assert rows["calibration slope"][-1] == "insufficient data"
    assert "Brier" not in rows


def test_the_index_is_byte_deterministic_and_self_contained(reports, approvals, tmp_path):
    first = write_index(reports_dir=reports, out=tmp_path / "a.html", approvals_dir=approvals).read_bytes()
    runner = CliRunner()
    result = runner.invoke(report_cli, ["index", "--reports", str(reports), "--approvals", str(approvals),
                                        "--out", str(tmp_path / "b.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.html").read_bytes() == first
    soup = BeautifulSoup(first.decode(), "html.parser")
    assert not soup.find_all(["script", "link", "iframe"])
    assert all(tag["src"].startswith("data:") for tag in soup.find_all(src=True))
    assert all(not re.match(r"(https?:)?//", tag["href"]) for tag in soup.find_all(href=True))


def test_the_index_changes_when_a_decision_is_added(reports, approvals, tmp_path):
    before = write_index(reports_dir=reports, out=tmp_path / "a.html", approvals_dir=approvals).read_bytes()
    (approvals / f"{ALERTS[0]['id']}.json").unlink()
    after = write_index(reports_dir=reports, out=tmp_path / "b.html", approvals_dir=approvals).read_bytes()
    assert before != after


def test_cli_index_without_records_explains(tmp_path):
    (tmp_path / "reports").mkdir()
    result = CliRunner().invoke(report_cli, ["index", "--reports", str(tmp_path / "reports"), "--out", str(tmp_path / "i.html")])
    assert result.exit_code == 2
    assert "no evidence records (NN_name.json) to index" in result.output


@pytest.mark.parametrize("differs", ["data", "reference"])
def test_records_made_from_other_data_or_another_reference_are_a_mixed_run(tmp_path, differs):
    """Record 01 is made from the reference alone (no source digest, so a new production
    period leaves it as it was); the reference's own digest still ties it to the others."""
    reports = tmp_path / "reports"
    reports.mkdir()
    study = {"name": "a study", "reference_sha256": "r" * 64}
    _write_record(reports, "01_reference_profile", study={**study, **({"reference_sha256": "s" * 64} if differs == "reference" else {})})
    _write_record(reports, "02_drift_analysis", study={**study, "data_sha256": "d" * 64})
    _write_record(reports, "03_fairness_audit", study={**study, "data_sha256": ("e" if differs == "data" else "d") * 64})
    text = _text(_soup(write_index(reports_dir=reports, out=reports / "index.html")))
    assert "the run is mixed" in text


def test_one_reference_and_one_source_are_not_a_mixed_run(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    study = {"name": "a study", "reference_sha256": "r" * 64}
    _write_record(reports, "01_reference_profile", study=study)
    _write_record(reports, "02_drift_analysis", study={**study, "data_sha256": "d" * 64})
    text = _text(_soup(write_index(reports_dir=reports, out=reports / "index.html")))
    assert "the run is mixed" not in text and "Study: a study" in text
