"""``clinval drift compare`` through click's test runner."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from clinval.cli.drift import drift
from clinval.drift import RESULT_COLUMNS


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"age": rng.normal(60, 10, 600), "sex": rng.choice(["f", "m"], 600), "site": rng.choice(["A", "B"], 600)})
    current = pd.DataFrame({"age": rng.normal(66, 10, 300), "sex": rng.choice(["f", "m"], 300), "site": rng.choice(["A", "B"], 300)})
    reference.to_csv(tmp_path / "reference.csv", index=False)
    current.to_parquet(tmp_path / "current.parquet", index=False)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"features": {"numeric": ["age"], "categorical": ["sex"]}}))
    return tmp_path


def _run(*args):
    return CliRunner().invoke(drift, ["compare", *map(str, args)])


def test_compare_writes_json_and_prints_a_table(files):
    out = files / "out" / "result.json"
    result = _run(files / "reference.csv", files / "current.parquet", "--study", files / "study.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    assert "age" in result.output and "drifted" in result.output
    payload = json.loads(out.read_text())
    assert [row["feature"] for row in payload["results"]] == ["age", "sex"]
    assert set(payload["results"][0]) == set(RESULT_COLUMNS)
    age = payload["results"][0]
    assert age["drifted"] is True and age["status"] == "ok" and age["wasserstein_norm"] > 0.3
    assert payload["results"][1]["wasserstein_norm"] is None  # not applicable: null, not NaN
    assert payload["features_source"] == "study"


def test_without_study_features_are_inferred_and_said(files):
    result = _run(files / "reference.csv", files / "current.parquet")
    assert result.exit_code == 0, result.output
    assert "No --study given" in result.output and "age" in result.output and "site" in result.output


def test_params_file_sets_the_decision(files):
    params = files / "drift.yaml"
    params.write_text(yaml.safe_dump({"fdr_level": 0.01, "psi_floor": 50.0, "alerts": {"x": 1}}))
    out = files / "r.json"
    result = _run(files / "reference.csv", files / "current.parquet", "--study", files / "study.yaml", "--params", params, "--out", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["settings"]["psi_floor"] == 50.0
    assert not any(row["drifted"] for row in payload["results"])
    assert "ignored keys" in result.output and "alerts" in result.output


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (lambda f: [f / "nope.csv", f / "current.parquet"], ["reference file", "nope.csv", "no such file"]),
        (lambda f: [f / "reference.csv", f / "current.parquet", "--study", f / "missing.yaml"], ["study file", "missing.yaml"]),
        (lambda f: [f / "reference.csv", f / "study.yaml"], ["current file", "study.yaml", ".parquet"]),
    ],
)
def test_bad_files_give_one_paragraph(files, make_args, expected):
    result = _run(*make_args(files))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output


def test_column_missing_in_one_file_is_named(files):
    current = pd.read_parquet(files / "current.parquet").drop(columns="sex")
    current.to_csv(files / "current.csv", index=False)
    result = _run(files / "reference.csv", files / "current.csv", "--study", files / "study.yaml")
    assert result.exit_code == 2
    assert "Column 'sex'" in result.output and "current file" in result.output and "current.csv" in result.output
    assert "Traceback" not in result.output


def test_bad_setting_and_bad_dtype_are_friendly(files):
    params = files / "bad.yaml"
    params.write_text("fdr_level: 2\n")
    result = _run(files / "reference.csv", files / "current.parquet", "--params", params)
    assert result.exit_code == 2 and "fdr_level" in result.output
    study = files / "typed.yaml"
    study.write_text(yaml.safe_dump({"features": {"numeric": ["sex"], "categorical": []}}))
    result = _run(files / "reference.csv", files / "current.parquet", "--study", study)
    assert result.exit_code == 2 and "'sex' is declared numeric" in result.output
