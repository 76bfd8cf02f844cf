"""Bring-your-own-data: every bad study gives a one-paragraph error and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from clinval import data
from clinval.cli import main


def _good_frame(n_per_year: int = 30) -> pd.DataFrame:
    rows = []
    for year in range(2015, 2021):
        for i in range(n_per_year):
            rows.append({"pid": f"{year}-{i}", "died": "yes" if i % 4 == 0 else "no", "age": 50 + i % 30,
                         "sex": "m" if i % 2 else "f", "smoker": ["y", "n", "nk"][i % 3], "year": year})
    return pd.DataFrame(rows)


def _study(path: str, **overrides) -> dict:
    study = {
        "source": {"path": path},
        "id_column": "pid",
        "target": {"column": "died", "positive": "yes"},
        "features": {"numeric": ["age"], "categorical": ["sex", "smoker"]},
        "sensitive": ["sex"],
        "time": {"column": "year"},
        "periods": {"rule": "value", "reference": {"from": 2015, "to": 2016}, "production": {"from": 2017, "to": 2020}},
    }
    study.update(overrides)
    return study


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "study.csv", **overrides) -> tuple[Path, dict]:
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path, _study(name, **overrides)


def test_a_good_csv_study_prepares(tmp_path):
    _, params = _write(tmp_path, _good_frame())
    prepared = data.prepare(data.study_from_params(params), root=tmp_path)
    assert len(prepared.reference) == 60
    assert prepared.periods == ("2017", "2018", "2019", "2020")
    assert prepared.reference["label"].sum() == 16


def test_a_good_parquet_study_with_date_periods_prepares(tmp_path):
    frame = _good_frame()
    frame["admitted"] = pd.to_datetime(frame["year"].astype(str) + "-03-15") + pd.to_timedelta(frame.index % 200, unit="D")
    _, params = _write(tmp_path, frame, "study.parquet", time={"column": "admitted"},
                       periods={"rule": "year", "reference": {"from": "2015", "to": "2016"}, "production": {"from": "2017", "to": "2020"}})
    prepared = data.prepare(data.study_from_params(params), root=tmp_path)
    assert prepared.periods == ("2017", "2018", "2019", "2020")


def _bad_missing_target(frame):
    return frame.drop(columns=["died"]), {}


def _bad_non_numeric(frame):
    frame = frame.copy()
    frame["age"] = frame["age"].astype(str)
    frame.loc[7, "age"] = "sixty"
    return frame, {}


def _bad_period_rule(frame):
    return frame, {"periods": {"rule": "fortnight", "reference": {"from": 2015, "to": 2016}, "production": {"from": 2017, "to": 2020}}}


def _bad_empty_reference(frame):
    return frame, {"periods": {"rule": "value", "reference": {"from": 2005, "to": 2006}, "production": {"from": 2017, "to": 2020}}}


def _bad_empty_production(frame):
    return frame[frame["year"] != 2019], {}


def _bad_duplicate_columns(frame):
    frame = frame.copy()
    frame.insert(3, "sex_copy", frame["sex"])
    return frame.rename(columns={"sex_copy": "sex"}), {}


BAD_STUDIES = {
    # case: (make the bad study, words the error must contain)
    "missing target column": (_bad_missing_target, ["study.csv", "'died'", "target", "missing"]),
    "non-numeric value": (_bad_non_numeric, ["study.csv", "'age'", "non-numeric", "data row 8", "'sixty'", "pid="]),
    "unknown period rule": (_bad_period_rule, ["study.yaml", "fortnight", "value, year, quarter, month"]),
    "empty reference period": (_bad_empty_reference, ["study.csv", "reference period", "no rows"]),
    "empty production period": (_bad_empty_production, ["study.csv", "'2019'", "no rows"]),
    "duplicate column names": (_bad_duplicate_columns, ["study.csv", "duplicate column names", "'sex'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_gives_a_clear_error_and_writes_nothing(tmp_path, case):
    make, words = BAD_STUDIES[case]
    frame, overrides = make(_good_frame())
    frame.to_csv(tmp_path / "study.csv", index=False)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "study.yaml").write_text(yaml.safe_dump(_study("study.csv", **overrides)))

    result = subprocess.run(
        [sys.executable, "-m", "clinval", "prepare", "--study", "params/study.yaml", "--out", "data/prepared"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith("Error: ")
    assert "Traceback" not in message
    assert "\n" not in message, "the error must be one paragraph"
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
    assert not (tmp_path / "data").exists(), "a rejected study must leave no outputs"


def test_check_mode_validates_without_writing(tmp_path, monkeypatch):
    _, params = _write(tmp_path, _good_frame())
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["prepare", "--study", "study.yaml", "--check"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert not (tmp_path / "data").exists()


def test_target_as_feature_and_leaking_column_are_refused():
    params = _study("x.csv", features={"numeric": ["age"], "categorical": ["died", "hosp"]}, never_features=["hosp"])
    with pytest.raises(data.StudyError) as err:
        data.study_from_params(params)
    assert "target 'died' is also listed as a feature" in str(err.value)
    assert "leak" in str(err.value)


def test_row_numbers_refer_to_the_source_even_after_the_cohort_filter(tmp_path):
    frame = _good_frame()
    frame["age"] = frame["age"].astype(str)
    frame.loc[10, "age"] = "n/a?"  # data row 11; the even data rows (men) are filtered out before validation
    _, params = _write(tmp_path, frame, cohort={"sex": ["f"]})
    with pytest.raises(data.StudyError, match=r"data row 11: pid='2015-10', age='n/a\?'"):
        data.prepare(data.study_from_params(params), root=tmp_path)
