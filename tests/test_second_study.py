"""A second study, unlike MONICA, through the whole workbook with params/ only (issue 16).

A clean clone gets the synthetic readmission registry of ``studies.write_registry_study``
(a folder of Parquet files, an integer outcome, integer category codes, more wards than a
palette has colours, a date time column) and the params under
``tests/fixtures/registry/params/`` in place of the repository's. Nothing else changes:
no notebook, no code. ``clinval study check`` and ``dvc repro`` must then run every stage,
and the records must find the drift built into the data (known truth): creatinine missing
in 15% of records until 2020 and in 60% from 2021, and a new ward 13 in 2022.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studies import write_registry_study

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "registry" / "params"
BIN = Path(sys.executable).parent
RECORDS = ("01_reference_profile", "02_drift_analysis", "03_fairness_audit", "04_revalidation")


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    clone = tmp_path_factory.mktemp("registry") / "clinval"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    shutil.copytree(FIXTURE, clone / "params", dirs_exist_ok=True)
    write_registry_study(clone)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CLINVAL_HOME": str(clone.parent / "home")}
    for command in (["clinval", "study", "check"], ["dvc", "repro"]):
        result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return clone


def _record(root: Path, name: str) -> dict:
    return json.loads((root / "reports" / f"{name}.json").read_text())


def test_every_record_is_written_for_the_second_study(registry):
    for name in RECORDS:
        for suffix in (".html", ".json", ".ipynb"):
            assert (registry / "reports" / f"{name}{suffix}").stat().st_size > 0, name + suffix
    assert (registry / "reports" / "index.html").exists()


def test_the_drift_built_into_the_data_is_found(registry):
    rows = _record(registry, "02_drift_analysis")["values"]["feature_drift"]
    missing = {r["period"] for r in rows if r["feature"] == "creatinine" and r["missing_drifted"]}
    assert {"2021", "2022"} <= missing, missing
    new_level = {r["period"] for r in rows if r["feature"] == "ward" and r["new_level_drifted"]}
    assert "2022" in new_level, new_level
    alerts = {(a["trigger"], a["period"]) for a in _record(registry, "02_drift_analysis")["alerts"]}
    assert {("data_quality_drift", "2021"), ("data_quality_drift", "2022")} <= alerts


def test_no_record_speaks_of_monica(registry):
    for path in sorted((registry / "reports").iterdir()):
        text = path.read_text(encoding="utf-8")
        for word in ("MONICA", "yronset", "premi", "smstat"):
            assert word not in text, f"{path.name} mentions {word}"


def test_the_fairness_audit_forms_groups_from_this_studys_attributes(registry):
    text = json.dumps(_record(registry, "03_fairness_audit"))
    assert "sex_code" in text and "age_years" in text
