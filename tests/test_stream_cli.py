"""``clinval drift stream`` through click's test runner, registered on the ``clinval`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from stream_data import CATEGORICAL, NUMERIC, period_rows, reference_and_log

from clinval import drift
from clinval.cli import main
from clinval.profile import build_reference_profile
from clinval.stream import DRIFT_COLUMNS, PERFORMANCE_COLUMNS


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_cli")
    reference, log = reference_and_log(seed=2)
    reference.to_parquet(root / "reference.parquet", index=False)
    reference.drop(columns=["predicted_risk", "label"]).to_csv(root / "reference_features.csv", index=False)
    log.to_parquet(root / "log.parquet", index=False, row_group_size=2000)
    (root / "study.yaml").write_text(yaml.safe_dump({"features": {"numeric": NUMERIC, "categorical": CATEGORICAL}}))
    return root, reference, log


def _run(*args):
    return CliRunner().invoke(main, ["drift", "stream", *map(str, args)])


def test_prints_decisions_and_performance_and_writes_json(files):
    root, reference, log = files
    out = root / "out" / "summary.json"
    result = _run(root / "log.parquet", "--reference", root / "reference.parquet", "--study", root / "study.yaml",
                  "--batch-rows", 1000, "--out", out)
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "peak RSS" in result.output
    payload = json.loads(out.read_text())
    assert [p["period"] for p in payload["periods"]] == list(dict.fromkeys(log["period"].dropna()))
    assert payload["read"]["rows"] == len(log) and payload["read"]["largest_batch"] <= 1000
    assert payload["read"]["rows_without_period"] == 4
    shifted = next(p for p in payload["periods"] if p["period"] == "shifted")
    assert set(shifted["features"][0]) == {c for c in DRIFT_COLUMNS}
    assert {"age", "sex"} <= {row["feature"] for row in shifted["features"] if row["drifted"]}
    assert shifted["prediction"]["drifted"] is True
    assert [row["metric"] for row in shifted["performance"]][2] == "AUROC"
    assert set(shifted["performance"][0]) == set(PERFORMANCE_COLUMNS)
    # the decisions are those of the in-memory engine on the same rows
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    for period in payload["periods"]:
        expected = drift.compare_period(profile, period_rows(log, period["period"]))
        assert [row["drifted"] for row in period["features"]] == expected["drifted"].tolist()
        np.testing.assert_allclose([row["p_value"] for row in period["features"]], expected["p_value"], rtol=1e-12)


def test_reference_risk_comes_from_the_logs_reference_rows(files, tmp_path):
    root, reference, log = files
    pipeline_log = log.copy()
    pipeline_log["period"] = pipeline_log["period"].astype(object)
    pipeline_log.loc[:499, "period"] = "reference"
    path = tmp_path / "pipeline_log.parquet"
    pipeline_log.to_parquet(path, index=False)
    out = tmp_path / "s.json"
    result = _run(path, "--reference", root / "reference_features.csv", "--study", root / "study.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    n_risks = int(pipeline_log.loc[:499, "predicted_risk"].notna().sum())  # missing risks are dropped
    assert f"Reference risk: {n_risks} rows" in result.output
    payload = json.loads(out.read_text())
    assert all(p["prediction"] is not None for p in payload["periods"])
    result = _run(root / "log.parquet", "--reference", root / "reference_features.csv", "--study", root / "study.yaml")
    assert result.exit_code == 0, result.output
    assert "prediction drift is skipped" in result.output


def test_small_counts_are_suppressed(files, tmp_path):
    root, _, log = files
    tiny = log.copy()
    tiny["period"] = tiny["period"].astype(object)
    tiny.loc[:6, "period"] = "tiny"  # 7 rows
    path = tmp_path / "tiny.parquet"
    tiny.to_parquet(path, index=False)
    out = tmp_path / "tiny.json"
    result = _run(path, "--reference", root / "reference.parquet", "--study", root / "study.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    period = next(p for p in json.loads(out.read_text())["periods"] if p["period"] == "tiny")
    assert period["rows"] == "<11" and all(row["n_current"] in ("<11", 0) for row in period["features"])
    assert "<11" in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda log: log.drop(columns=["lab"]), ["lab", "is not in the prediction log"]),
        (lambda log: log.assign(label=log["label"].fillna(0) * 2), ["'label'", "0/1"]),
        (lambda log: log.assign(predicted_risk=log["predicted_risk"] * 3), ["'predicted_risk'", "[0, 1]", "data row"]),
        (lambda log: log.assign(age=log["age"].astype(str)), ["'age'", "numeric"]),
    ],
    ids=["missing-column", "labels-not-binary", "risk-above-one", "text-in-numeric"],
)
def test_bad_logs_give_one_paragraph_naming_file_and_column(files, tmp_path, change, expected):
    root, _, log = files
    path = tmp_path / "bad.parquet"
    change(log).to_parquet(path, index=False)
    result = _run(path, "--reference", root / "reference.parquet", "--study", root / "study.yaml")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "bad.parquet" in result.output
    for text in expected:
        assert text in result.output


def test_missing_files_are_named(files):
    root, _, _ = files
    result = _run(root / "nope.parquet", "--reference", root / "reference.parquet", "--study", root / "study.yaml")
    assert result.exit_code == 2 and "nope.parquet" in result.output and "no such" in result.output
    result = _run(root / "log.parquet", "--reference", root / "reference.parquet", "--study", root / "missing.yaml")
    assert result.exit_code == 2 and "missing.yaml" in result.output
    assert "Traceback" not in result.output


def test_a_bad_reference_risk_is_named(files, tmp_path):
    root, reference, _ = files
    bad = tmp_path / "bad_reference.parquet"
    reference.assign(predicted_risk=reference["predicted_risk"] + 1).to_parquet(bad, index=False)
    result = _run(root / "log.parquet", "--reference", bad, "--study", root / "study.yaml")
    assert result.exit_code == 2 and "bad_reference.parquet" in result.output and "'predicted_risk'" in result.output
