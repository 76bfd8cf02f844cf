"""End to end: a clean clone runs the whole pipeline from nothing and reproduces dvc.lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def clean_clone(tmp_path_factory) -> Path:
    committed = _run(["git", "ls-files", "--error-unmatch", "dvc.lock"], ROOT)
    assert committed.returncode == 0, "dvc.lock must be committed: it is what a clean clone reproduces"
    clone = tmp_path_factory.mktemp("clone") / "clinval"
    result = _run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], ROOT)
    assert result.returncode == 0, result.stderr
    return clone


def test_clean_clone_reproduces_dvc_lock_byte_for_byte(clean_clone):
    before = (clean_clone / "dvc.lock").read_bytes()
    result = _run([str(Path(sys.executable).parent / "dvc"), "repro", "--force"], clean_clone)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = (clean_clone / "dvc.lock").read_bytes()
    if after != before:
        diff = _run(["git", "diff", "--", "dvc.lock"], clean_clone).stdout
        pytest.fail(f"dvc.lock changed after a clean-clone dvc repro:\n{diff[:4000]}")
    assert (clean_clone / "reports" / "index.html").exists()


def test_a_second_repro_is_a_no_op(clean_clone):
    result = _run([str(Path(sys.executable).parent / "dvc"), "repro"], clean_clone)
    assert result.returncode == 0, result.stderr
    assert "Running stage" not in result.stdout, result.stdout
    status = _run([str(Path(sys.executable).parent / "dvc"), "status"], clean_clone)
    assert "up to date" in status.stdout, status.stdout


def _counts(value, key=""):
    """Every integer stored under a count-like key ("n", "n_*") anywhere in a record."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _counts(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _counts(v, key)
    elif isinstance(value, int) and not isinstance(value, bool) and (key == "n" or key.startswith("n_")):
        yield key, value


def test_records_hold_aggregates_only_and_no_small_cells(clean_clone):
    reports = clean_clone / "reports"
    assert not list(reports.rglob("*.parquet")) and not list(reports.rglob("*.csv")), "no patient data in reports/"
    for path in reports.glob("[0-9][0-9]_*.json"):
        record = json.loads(path.read_text())
        k = record["parameters"]["min_cell_size"]
        small = [(key, n) for key, n in _counts(record["values"]) if 0 < n < k]
        assert not small, f"{path.name} shows counts below {k}: {small[:5]}"


def test_records_carry_no_warnings_or_paths_of_the_machine(clean_clone):
    """A warning in a record distracts a reviewer and, through its file path, makes the
    record differ between machines; both are defects to fix at the source."""
    for path in (clean_clone / "reports").glob("[0-9][0-9]_*.ipynb"):
        nb = json.loads(path.read_text())
        streams = [o["text"] for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "stream"]
        assert not streams, f"{path.name} printed: {''.join(streams)[:500]}"
    for path in (clean_clone / "reports").glob("*.html"):
        page = path.read_text()
        assert str(clean_clone) not in page and str(ROOT) not in page, f"{path.name} names a machine path"


def test_the_run_command_records_the_run_and_writes_the_pccp_report(clean_clone, tmp_path):
    """The rest of `make run` on a fresh pipeline: record it in the ledger, write the PCCP report."""
    env = {"CLINVAL_HOME": str(tmp_path / "home"), "CLINVAL_PASSPHRASE": "pipeline-test-passphrase"}
    for args in (["audit", "record", "--create-signer"], ["report", "pccp"], ["audit", "verify", "--deep"]):
        result = subprocess.run([str(Path(sys.executable).parent / "clinval"), *args], cwd=clean_clone,
                                env={**os.environ, **env}, capture_output=True, text=True)
        assert result.returncode == 0, f"clinval {' '.join(args)}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    page = (clean_clone / "reports" / "pccp_report.html").read_text()
    assert "Description of Modifications" in page and "No modification has been made under the plan" in page
    assert str(clean_clone) not in page
