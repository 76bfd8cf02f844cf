"""``clinval drift compare`` through click's test runner."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from clinval.cli.drift import drift
from clinval.drift import RESULT_COLUMNS, DriftSettings, compare_period
from clinval.profile import build_reference_profile


@pytest.fixture()
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params/ here: nothing is picked up from the repository
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"age": rng.normal(60, 10, 600), "sex": rng.choice(["f", "m"], 600), "site": rng.choice(["A", "B"], 600)})
    current = pd.DataFrame({"age": rng.normal(66, 10, 300), "sex": rng.choice(["f", "m"], 300), "site": rng.choice(["A", "B"], 300)})
    reference.to_csv(tmp_path / "reference.csv", index=False)
    current.to_parquet(tmp_path / "current.parquet", index=False)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"features": {"numeric": ["age"], "categorical": ["sex"]}}))
    return tmp_path


@pytest.fixture()
def prepared_like(tmp_path, monkeypatch):
    """Two periods as the pipeline writes them: reserved columns, an id, a year column, a date, and features."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)

    def period(n, start, year, shift):
        return pd.DataFrame({
            "record_id": [f"r{i}" for i in range(start, start + n)],
            "period": str(year),
            "label": rng.integers(0, 2, n),
            "patient_code": np.arange(start, start + n),
            "yronset": float(year),
            "admitted": pd.date_range(f"{year}-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
            "age": rng.normal(60 + shift, 10, n),
            "smoker": rng.choice(["y", "n"], n, p=[0.3 + shift / 100, 0.7 - shift / 100]),
            "diabetes": rng.choice(["y", "n", "nk"], n),
            "rare_lab": np.r_[rng.normal(1, 0.1, 20), np.full(n - 20, np.nan)],  # 20 values: below min_n
        })

    period(800, 0, 1986, 0).to_parquet(tmp_path / "reference.parquet", index=False)
    period(400, 800, 1993, 4).to_parquet(tmp_path / "current.parquet", index=False)
    return tmp_path


def _run(*args):
    return CliRunner().invoke(drift, ["compare", *map(str, args)])


def _json(*args):
    result = CliRunner().invoke(drift, ["compare", *map(str, args), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_compare_writes_json_and_prints_a_table(files):
    out = files / "out" / "result.json"
    result = _run(files / "reference.csv", files / "current.parquet", "--study", files / "study.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    assert "feature" in result.output and "verdict" in result.output
    assert "age" in result.output and "1 of 2 tested features drifted" in result.output
    assert "Not tested: site: not among the study's features." in result.output
    payload = json.loads(out.read_text())
    assert [row["feature"] for row in payload["results"]] == ["age", "sex"]
    assert set(payload["results"][0]) == {*RESULT_COLUMNS, "verdict"}
    age = payload["results"][0]
    assert age["drifted"] is True and age["verdict"] == "drifted" and age["status"] == "ok" and age["wasserstein_norm"] > 0.3
    assert payload["results"][1]["wasserstein_norm"] is None  # not applicable: null, not NaN
    assert payload["features_source"] == "study" and payload["excluded"] == {"site": "not among the study's features"}


def test_json_and_csv_on_stdout_hold_the_engines_numbers(files):
    args = (files / "reference.csv", files / "current.parquet", "--study", files / "study.yaml")
    payload = _json(*args)
    csv = CliRunner().invoke(drift, ["compare", *map(str, args), "--format", "csv"])
    assert csv.exit_code == 0, csv.output
    table = pd.read_csv(io.StringIO(csv.stdout))
    assert list(table.columns) == [*RESULT_COLUMNS, "verdict"]
    profile = build_reference_profile(pd.read_csv(files / "reference.csv"), numeric=["age"], categorical=["sex"])
    expected = compare_period(profile, pd.read_parquet(files / "current.parquet"), settings=DriftSettings())
    np.testing.assert_allclose(table["p_value"], expected["p_value"], rtol=1e-12)
    np.testing.assert_allclose([row["q_value"] for row in payload["results"]], expected["q_value"], rtol=1e-12)
    assert table["verdict"].tolist() == ["drifted" if d else "not drifted" for d in expected["drifted"]]


def test_without_study_non_features_are_left_out_and_named(prepared_like):
    result = _run(prepared_like / "reference.parquet", prepared_like / "current.parquet")
    assert result.exit_code == 0, result.output
    excluded = _json(prepared_like / "reference.parquet", prepared_like / "current.parquet")["excluded"]
    assert set(excluded) == {"record_id", "period", "label", "patient_code", "yronset", "admitted"}
    assert "identifier" in excluded["patient_code"] and "date" in excluded["admitted"]
    assert "1986" in excluded["yronset"] and "1993" in excluded["yronset"] and "time or period" in excluded["yronset"]
    for column in excluded:
        assert column in result.output
    assert "No --study given" in result.output and "Not tested:" in result.output


def test_left_out_columns_do_not_enter_the_false_discovery_rate_family(prepared_like):
    """The FDR decisions equal those of the engine on the features alone."""
    inferred = _json(prepared_like / "reference.parquet", prepared_like / "current.parquet")
    features = ["age", "rare_lab", "smoker", "diabetes"]  # numeric first, as the engine orders them
    assert [row["feature"] for row in inferred["results"]] == features
    reference, current = (pd.read_parquet(prepared_like / f"{n}.parquet") for n in ("reference", "current"))
    profile = build_reference_profile(reference, numeric=["age", "rare_lab"], categorical=["smoker", "diabetes"])
    expected = compare_period(profile, current).set_index("feature").loc[features]
    np.testing.assert_allclose([r["q_value"] if r["q_value"] is not None else np.nan for r in inferred["results"]],
                               expected["q_value"], rtol=1e-12)
    # the same rows with the id and year tested too: more tests in the family, other q-values
    everything = build_reference_profile(reference, numeric=["age", "rare_lab", "yronset", "patient_code"],
                                         categorical=["smoker", "diabetes"])
    polluted = compare_period(everything, current).set_index("feature").loc[features]
    assert not np.allclose(polluted["q_value"].dropna(), expected["q_value"].dropna())


def test_untestable_features_are_said_and_never_counted_as_not_drifted(prepared_like):
    result = _run(prepared_like / "reference.parquet", prepared_like / "current.parquet")
    payload = _json(prepared_like / "reference.parquet", prepared_like / "current.parquet")
    rare = next(row for row in payload["results"] if row["feature"] == "rare_lab")
    assert rare["verdict"] == "untestable" and rare["drifted"] is None and "min_n" in rare["status"]
    assert payload["summary"]["n_untestable"] == 1 and payload["summary"]["n_tested"] == 3
    assert "of 3 tested features drifted" in result.output
    assert "Untestable: rare_lab:" in result.output and "not drifted" not in next(
        line for line in result.output.splitlines() if line.lstrip().startswith("rare_lab"))


def test_exclude_leaves_a_feature_out(prepared_like):
    payload = _json(prepared_like / "reference.parquet", prepared_like / "current.parquet", "--exclude", "diabetes")
    assert "diabetes" not in [row["feature"] for row in payload["results"]]
    assert payload["excluded"]["diabetes"] == "left out with --exclude"


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
        (lambda f: [f / "nope.csv", f / "current.parquet"], ["REFERENCE", "nope.csv", "does not exist"]),
        (lambda f: [f / "reference.csv", f / "current.parquet", "--study", f / "missing.yaml"], ["--study", "missing.yaml"]),
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
