"""Evidence records: deterministic, self-contained, and complete in their JSON twin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from clinval.evidence import NotebookFailed, run_notebook

CELLS = [
    ("code", 'data_path = "table.csv"\nthreshold = 0.5', ["parameters"]),
    ("code", "import pandas as pd\nfrom matplotlib.figure import Figure\nfrom clinval import plots\nfrom clinval.evidence import show\nplots.use_record_style()", []),
    ("markdown", "## A table\nShown and recorded.", []),
    ("code", 'frame = pd.read_csv(data_path)\nshow(frame.describe().loc[["mean", "std"]], key="summary")', []),
    ("code", 'fig = Figure()\nax = fig.subplots()\nax.plot(frame["x"], frame["y"])\nfig', []),
    ("code", 'show(f"{len(frame)} rows above {threshold}", key="status")', []),
]


def _notebook(folder: Path, cells=CELLS, name: str = "01_demo.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path = folder / name
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "table.csv").write_text("x,y\n1,2\n2,4\n3,5\n")
    notebook = _notebook(root / "notebooks")
    first = run_notebook(notebook, reports_dir=root / "reports", parameters={"threshold": 0.7}, root=root, progress=False)
    snapshot = {p: p.read_bytes() for p in (first.notebook, first.html, first.json)}
    second = run_notebook(notebook, reports_dir=root / "reports", parameters={"threshold": 0.7}, root=root, progress=False)
    return root, second, snapshot


def test_two_runs_on_the_same_inputs_are_byte_identical(project):
    _, paths, snapshot = project
    for path, before in snapshot.items():
        assert path.read_bytes() == before, f"{path.name} changed between identical runs"


def test_html_loads_nothing_from_the_network(project):
    _, paths, _ = project
    page = paths.html.read_text()
    assert "<script src" not in page and "require.js" not in page and "MathJax" not in page
    external = re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', page)
    assert external == []
    assert not re.search(r"@import\s+url\(\s*['\"]?https?:", page)
    assert "data:image/png;base64," in page, "figures are embedded"


def test_json_carries_what_was_shown_parameters_and_input_digests(project):
    root, paths, _ = project
    record = json.loads(paths.json.read_text())
    assert record["status"] == "3 rows above 0.7"
    assert record["parameters"] == {"data_path": "table.csv", "threshold": 0.7}
    assert set(record["inputs"]) == {"notebooks/01_demo.ipynb", "notebooks/table.csv"}
    summary = {row["index"]: row for row in record["values"]["summary"]}
    assert summary["mean"]["y"] == pytest.approx(11 / 3)
    assert "3.667" in paths.html.read_text(), "the HTML shows the recorded number"


def test_html_footer_names_input_digests_and_version(project):
    _, paths, _ = project
    record = json.loads(paths.json.read_text())
    page = paths.html.read_text()
    for digest in record["inputs"].values():
        assert digest in page
    assert f"clinval {record['clinval_version']}" in page


def test_executed_notebook_has_no_timestamps_and_records_its_parameters(project):
    _, paths, _ = project
    nb = nbformat.read(paths.notebook, as_version=4)
    assert nb.metadata["papermill"]["parameters"] == {"threshold": 0.7}
    assert "start_time" not in json.dumps(nb.metadata)
    assert all("execution" not in c.metadata for c in nb.cells)
    assert [c.id for c in nb.cells] == [f"cell-{i:02d}" for i in range(len(nb.cells))]


def test_a_failing_notebook_writes_no_record(tmp_path):
    cells = [("code", "x = 1", ["parameters"]), ("code", "raise RuntimeError('broken input')", [])]
    notebook = _notebook(tmp_path, cells, "02_broken.ipynb")
    with pytest.raises(NotebookFailed, match="broken input"):
        run_notebook(notebook, reports_dir=tmp_path / "reports", root=tmp_path, progress=False)
    assert not (tmp_path / "reports").exists()
    assert (tmp_path / ".clinval" / "failed" / "02_broken.ipynb").exists()


def test_unknown_parameters_are_refused_before_running(tmp_path):
    notebook = _notebook(tmp_path, [("code", "x = 1", ["parameters"])], "03_p.ipynb")
    with pytest.raises(ValueError, match="not in its parameters cell"):
        run_notebook(notebook, reports_dir=tmp_path / "reports", parameters={"y": 2}, root=tmp_path, progress=False)


def test_a_key_shown_twice_is_an_error(tmp_path):
    cells = [("code", "x = 1", ["parameters"]),
             ("code", "from clinval.evidence import show\nshow(1, key='a')\nshow(2, key='a')", [])]
    notebook = _notebook(tmp_path, cells, "04_twice.ipynb")
    with pytest.raises(NotebookFailed, match="key 'a' twice"):
        run_notebook(notebook, reports_dir=tmp_path / "reports", root=tmp_path, progress=False)
