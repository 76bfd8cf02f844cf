"""Every record this checkout's pipeline wrote (reports/*.html, *.json, executed *.ipynb)
shows no count of 1 to 10, no "no events", and no rate or calibration bin from which such
a count follows. The same scan runs on a clean clone in test_pipeline_reproduces.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from record_scan import scan  # noqa: E402

REPORTS = Path(__file__).resolve().parents[1] / "reports"


@pytest.mark.skipif(not (REPORTS / "index.html").exists(), reason="no records yet: run `make run` first")
def test_records_show_no_small_count():
    records = sorted(REPORTS.glob("[0-9][0-9]_*"))
    assert len(records) >= 12, f"expected the html, json and ipynb of four records, found {[p.name for p in records]}"
    findings = scan(REPORTS)
    assert not findings, "\n".join(f"{f}: {what} … {excerpt!r}" for f, what, excerpt in findings[:20])


def test_the_scan_finds_what_issue_12_found(tmp_path):
    (tmp_path / "03_x.json").write_text(
        '{"values": {"groups": [{"metric": "prevalence", "n": 23, "value": 0.0869},'
        ' {"metric": "prevalence", "n": 400, "value": 0.2}],'
        ' "curve": [{"n": 49, "observed": 0.0816, "mean_predicted": 0.05}],'
        ' "notes": ["In 1988, f × 35-54 has no events.", "1 events and 28 non-events"]}}')
    found = [what for _, what, _ in scan(tmp_path)]
    assert any("prevalence 0.087 of n = 23 reveals 2" in w for w in found)
    assert any("calibration bin" in w for w in found)
    assert "no events" in found and "1 events" in found
    assert not any("n = 400" in w for w in found)


@pytest.mark.skipif(not (REPORTS / "index.html").exists(), reason="no records yet: run `make run` first")
def test_executed_notebooks_print_nothing():
    """A warning in a record distracts a reviewer (and its path differs between machines)."""
    import json

    for path in sorted(REPORTS.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        streams = [o["text"] for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
        assert not streams, f"{path.name} printed: {''.join(map(''.join, streams))[:300]}"
