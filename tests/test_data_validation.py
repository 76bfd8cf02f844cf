"""Bring-your-own-data: a corpus of broken exports, each refused by name, none written.

Each case builds a small study that is fine except for one defect a real export has, runs
`clinval prepare` over a folder holding the last good prepared study, and checks the
one-paragraph error (file, column, row, what to do) and that the good outputs are untouched.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from clinval import data
from clinval.cli import main
from studies import monica_params


def _good_frame(n_per_year: int = 120) -> pd.DataFrame:
    rows = []
    for year in range(2015, 2021):
        for i in range(n_per_year):
            rows.append({"pid": f"{year}-{i}", "died": "yes" if i % 3 == 0 else "no", "age": 50 + i % 30,
                         "sex": "m" if i % 2 else "f", "smoker": ["y", "n", "nk", "n", "y"][i % 5], "year": year})
    return pd.DataFrame(rows)


def _study(path: str, **overrides) -> dict:
    study = {
        "source": {"path": path},
        "id_column": "pid",
        "target": {"column": "died", "positive": "yes", "negative": ["no"]},
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
    assert len(prepared.reference) == 240
    assert prepared.periods == ("2017", "2018", "2019", "2020")
    assert prepared.reference["label"].sum() == 80


def test_outcomes_not_yet_known_in_a_production_period_are_unlabelled(tmp_path):
    frame = _good_frame()
    frame.loc[frame["year"] == 2020, "died"] = ""
    _, params = _write(tmp_path, frame)
    prepared = data.prepare(data.study_from_params(params), root=tmp_path)
    assert prepared.production_period("2020")["label"].isna().all()
    assert prepared.production_period("2019")["label"].notna().all()


def test_a_good_parquet_study_with_date_periods_prepares(tmp_path):
    frame = _good_frame()
    frame["admitted"] = pd.to_datetime(frame["year"].astype(str) + "-03-15") + pd.to_timedelta(frame.index % 200, unit="D")
    _, params = _write(tmp_path, frame, "study.parquet", time={"column": "admitted"},
                       periods={"rule": "year", "reference": {"from": "2015", "to": "2016"}, "production": {"from": "2017", "to": "2020"}})
    prepared = data.prepare(data.study_from_params(params), root=tmp_path)
    assert prepared.periods == ("2017", "2018", "2019", "2020")


def test_integer_years_in_parquet_work_with_the_year_rule(tmp_path):
    """An int64 year is a year, never nanoseconds since 1970."""
    frame = _good_frame()
    _, params = _write(tmp_path, frame, "study.parquet",
                       periods={"rule": "year", "reference": {"from": 2015, "to": 2016}, "production": {"from": 2017, "to": 2020}})
    prepared = data.prepare(data.study_from_params(params), root=tmp_path)
    assert prepared.periods == ("2017", "2018", "2019", "2020") and len(prepared.reference) == 240


def test_bom_and_crlf_and_latin1_with_its_encoding_are_read(tmp_path):
    frame = _good_frame()
    frame.loc[0, "sex"] = "f"
    text = frame.to_csv(index=False, lineterminator="\r\n")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(data.prepare(data.study_from_params(_study("bom.csv")), root=tmp_path).reference) == 240
    frame["smoker"] = frame["smoker"].replace({"nk": "inconnu é"})
    (tmp_path / "latin.csv").write_bytes(frame.to_csv(index=False).encode("latin-1"))
    study = _study("latin.csv", source={"path": "latin.csv", "encoding": "latin-1"})
    prepared = data.prepare(data.study_from_params(study), root=tmp_path)
    assert "inconnu é" in set(prepared.reference["smoker"])


def test_a_folder_of_parquet_files_is_one_table_and_errors_name_the_file(tmp_path):
    frame = _good_frame()
    (tmp_path / "exports").mkdir()
    for year, part in frame.groupby("year"):
        part.to_parquet(tmp_path / "exports" / f"{year}.parquet", index=False)
    prepared = data.prepare(data.study_from_params(_study("exports")), root=tmp_path)
    assert len(prepared.reference) + len(prepared.production) == len(frame)
    bad = frame[frame["year"] == 2018].copy()
    bad["age"] = bad["age"].astype(str)
    bad.iloc[4, bad.columns.get_loc("age")] = "old"
    bad.to_parquet(tmp_path / "exports" / "2018.parquet", index=False)
    with pytest.raises(data.StudyError, match=r"data row 5 of exports/2018\.parquet"):
        data.prepare(data.study_from_params(_study("exports")), root=tmp_path)


# ---------------------------------------------------------------------------- the corpus of broken exports


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _missing_target(frame):
    return _csv(frame.drop(columns=["died"])), {}


def _non_numeric(frame):
    frame = frame.astype({"age": str})
    frame.loc[7, "age"] = "sixty"
    return _csv(frame), {}


def _period_rule(frame):
    return _csv(frame), {"periods": {"rule": "fortnight", "reference": {"from": 2015, "to": 2016}, "production": {"from": 2017, "to": 2020}}}


def _empty_reference(frame):
    return _csv(frame), {"periods": {"rule": "value", "reference": {"from": 2005, "to": 2006}, "production": {"from": 2017, "to": 2020}}}


def _empty_production(frame):
    return _csv(frame[frame["year"] != 2019]), {}


def _duplicate_columns(frame):
    frame = frame.copy()
    frame.insert(3, "sex_copy", frame["sex"])
    return _csv(frame.rename(columns={"sex_copy": "sex"})), {}


def _stray_label(frame):
    frame = frame.copy()
    frame.loc[300, "died"] = "maybe"
    return _csv(frame), {}


def _cut_mid_row(frame):
    data_bytes = _csv(frame)
    return data_bytes[: len(data_bytes) // 2], {}


def _all_missing_feature(frame):
    return _csv(frame.assign(smoker="")), {}


def _datetime_as_numeric(frame):
    frame = frame.assign(admitted=pd.to_datetime(frame["year"].astype(str) + "-06-01"))
    return frame, {"features": {"numeric": ["age", "admitted"], "categorical": ["sex", "smoker"]}}


def _integer_quarters(frame):
    return frame, {"periods": {"rule": "quarter", "reference": {"from": "2015Q1", "to": "2016Q4"}, "production": {"from": "2017Q1", "to": "2020Q4"}}}


def _latin1_without_encoding(frame):
    frame = frame.copy()
    frame.loc[2, "smoker"] = "fumé"
    return frame.to_csv(index=False).encode("latin-1"), {}


def _too_little_data(frame):
    return _csv(pd.concat([frame[frame["year"] == 2015].head(20), frame[frame["year"] > 2016]])), {}


def _unquoted_yes(frame):
    return _csv(frame), {"target": {"column": "died", "positive": True, "negative": ["no"]}}


def _reversed_range(frame):
    return _csv(frame), {"periods": {"rule": "value", "reference": {"from": 2016, "to": 2015}, "production": {"from": 2017, "to": 2020}}}


def _time_as_feature(frame):
    return _csv(frame), {"features": {"numeric": ["age", "year"], "categorical": ["sex"]}}


def _no_negative_declared(frame):
    return _csv(frame), {"target": {"column": "died", "positive": "yes"}}


def _missing_source_path(frame):
    return _csv(frame), {"source": {"package": "DAAG", "item": "monica"}}


BROKEN_EXPORTS: dict[str, tuple[Callable, list[str]]] = {
    # case: (make the bad export from a good frame, words the error must contain)
    "missing target column": (_missing_target, ["study.csv", "'died'", "target", "missing"]),
    "non-numeric value": (_non_numeric, ["study.csv", "'age'", "non-numeric", "data row 8 (line 9 of the file)", "'sixty'", "pid="]),
    "unknown period rule": (_period_rule, ["study.yaml", "fortnight", "value, year, quarter, month"]),
    "empty reference period": (_empty_reference, ["study.csv", "reference period", "no rows", "2015"]),
    "empty production period": (_empty_production, ["study.csv", "'2019'", "no rows"]),
    "duplicate column names": (_duplicate_columns, ["study.csv", "duplicate column names", "'sex'"]),
    "a stray label": (_stray_label, ["'died'", "'maybe'", "neither positive", "data row 301", "pid='2017-60'"]),
    "a file cut mid-row": (_cut_mid_row, ["study.csv", "line", "fields but the header names 6", "cut off"]),
    "an all-missing feature": (_all_missing_feature, ["'smoker'", "missing in every one of the 240 reference records"]),
    "a date declared numeric": (_datetime_as_numeric, ["study.parquet", "'admitted'", "holds dates", "numeric feature"]),
    "integer years with a quarter rule": (_integer_quarters, ["study.parquet", "'year'", "holds numbers (int64)", "rule 'year'"]),
    "Latin-1 bytes read as UTF-8": (_latin1_without_encoding, ["study.csv", "line 4, column", "0xe9", "source.encoding: latin-1"]),
    "too little data": (_too_little_data, ["too little data", "20 records; at least 100", "events and", "per coefficient"]),
    "positive: yes unquoted": (_unquoted_yes, ["study.yaml", "target.positive", "YAML boolean True", "quote it"]),
    "a reversed range": (_reversed_range, ["study.yaml", "periods.reference", "from 2016 to 2015", "'from' must not come after 'to'"]),
    "the time column as a feature": (_time_as_feature, ["study.yaml", "time column 'year'", "also listed as a feature"]),
    "no negative value declared": (_no_negative_declared, ["study.yaml", "target.negative", "never turn an event into a non-event"]),
    "a package source without a path": (_missing_source_path, ["study.yaml", "source.path", "clinval study embed"]),
}


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def good_outputs(tmp_path_factory) -> Path:
    """A prepared study from a good export: what every refusal must leave untouched."""
    folder = tmp_path_factory.mktemp("good")
    _, params = _write(folder, _good_frame())
    data.write_prepared(data.prepare(data.study_from_params(params), root=folder), folder / "data" / "prepared")
    return folder / "data" / "prepared"


@pytest.mark.parametrize("case", sorted(BROKEN_EXPORTS))
def test_a_broken_export_is_refused_by_name_and_leaves_the_good_outputs(tmp_path, good_outputs, case, monkeypatch):
    make, words = BROKEN_EXPORTS[case]
    written, overrides = make(_good_frame())
    name = "study.csv" if isinstance(written, bytes) else "study.parquet"
    if isinstance(written, bytes):
        (tmp_path / name).write_bytes(written)
    else:
        written.to_parquet(tmp_path / name, index=False)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "study.yaml").write_text(yaml.safe_dump(_study(name, **overrides)))
    prepared = tmp_path / "data" / "prepared"
    prepared.parent.mkdir()
    shutil.copytree(good_outputs, prepared)
    before = _tree_digest(prepared)

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["prepare", "--study", "params/study.yaml", "--out", "data/prepared"])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and "Traceback" not in message
    flat = " ".join(message.split())  # click wraps long messages; the words are what matter
    for word in words:
        assert word in flat, f"{word!r} missing from: {flat}"
    assert _tree_digest(prepared) == before, "a refused study must leave the last good outputs as they were"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared"], "nothing half-written beside them"


def test_the_command_prints_one_paragraph_and_exits_2(tmp_path):
    """The real command, as a user runs it: one paragraph on stderr, no traceback, nothing written."""
    (tmp_path / "study.csv").write_bytes(_stray_label(_good_frame())[0])
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "study.yaml").write_text(yaml.safe_dump(_study("study.csv")))
    result = subprocess.run([sys.executable, "-m", "clinval", "prepare", "--study", "params/study.yaml", "--out", "data/prepared"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "Traceback" not in message and "\n" not in message
    assert not (tmp_path / "data").exists()


def test_check_mode_validates_the_study_and_the_plan_without_writing(tmp_path, monkeypatch):
    _, params = _write(tmp_path, _good_frame())
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(params))
    plan = monica_params("pccp")
    plan["locked"]["features"] = ["smoker", "age", "sex"]  # the same set in another order fits
    plan["data_management"] = {"training_periods": ["2018", "2019"], "sequestered_periods": ["2020"]}
    (tmp_path / "pccp.yaml").write_text(yaml.safe_dump(plan))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["study", "check", "--study", "study.yaml", "--plan", "pccp.yaml"])
    assert result.exit_code == 0, result.output
    assert "valid, and pccp.yaml fits it" in result.output
    assert not (tmp_path / "data").exists()


def test_a_plan_written_for_another_study_is_refused_at_check(tmp_path, monkeypatch):
    _, params = _write(tmp_path, _good_frame())
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(params))
    plan = monica_params("pccp")
    plan["locked"]["features"] = ["age", "sex", "premi"]
    plan["data_management"] = {"training_periods": ["1991", "1992"], "sequestered_periods": ["1993"]}
    (tmp_path / "pccp.yaml").write_text(yaml.safe_dump(plan))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["study", "check", "--study", "study.yaml", "--plan", "pccp.yaml"])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    for words in ("['premi'] locked but not in the study", "['smoker'] in the study but not locked",
                  "data_management.training_periods ['1991', '1992'] are not production periods", "2017, 2018, 2019, 2020"):
        assert words in flat, flat


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
    with pytest.raises(data.StudyError, match=r"data row 11 \(line 12 of the file\): pid='2015-10', age='n/a\?'"):
        data.prepare(data.study_from_params(params), root=tmp_path)
