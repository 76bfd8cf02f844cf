"""Bad input to each family of ``clinval`` commands: exit status 2 and one ``Error:`` paragraph.

One case per top-level command or group, each reaching the command's body (not click's own
usage errors), so the message comes from clinval: a params file, a data file, an argument
or a missing pipeline output the person can fix. No traceback and no ``internal error``:
that would mean a library raise for bad input is not a :class:`clinval.errors.ClinvalError`.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import click
import nbformat
import pytest
from click.testing import CliRunner

from clinval.cli import main
from clinval.cli._common import ENV_DEBUG, EXIT_ERROR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """An empty repository-like folder with a few broken inputs; no key store, no ledger."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_DEBUG, raising=False)
    for name in ("CLINVAL_USER", "CLINVAL_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLINVAL_HOME", str(tmp_path / "key-store"))
    (tmp_path / "params").mkdir()
    shutil.copy(ROOT / "params" / "study.yaml", tmp_path / "params" / "study.yaml")
    (tmp_path / "empty").mkdir()
    files = {
        "broken.yaml": "source: [unclosed\n",
        "sourceless.yaml": "features: {numeric: [age], categorical: []}\n",
        "features.yaml": "features: {numeric: [age], categorical: []}\n",
        "drift.yaml": "fdr_level: 2\n",
        "plan.yaml": "triggers: 3\n",
        "trust.json": "{}",
        "reference.csv": "age\n61\n72\nunknown\n",
        "current.csv": "age\n58\n64\n70\n",
        "outcomes.csv": "patient\n1\n",
        "record.json": "{not json",
        "model.yaml": "estimator: random_forest\nseed: 1\nholdout_fraction: 0.3\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    cell = nbformat.v4.new_code_cell("threshold = 0.5")
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell]
    nbformat.write(notebook, tmp_path / "notebook.ipynb")
    (tmp_path / "notebook.yaml").write_text("thresold: 0.4\n")
    return tmp_path


# family -> (arguments, words the message must hold)
CASES = {
    "study": (["study", "check", "--study", "broken.yaml"], "not valid YAML"),
    "prepare": (["prepare", "--study", "sourceless.yaml", "--out", "out"], "source"),
    "train": (["train", "--prepared", "empty", "--recipe", "model.yaml", "--out", "out"], "random_forest"),
    "score": (["score", "--prepared", "empty", "--model", "empty", "--out", "out"], "no model here"),
    "notebook": (["notebook", "run", "notebook.ipynb", "--params", "notebook.yaml", "--reports", "out"], "thresold"),
    "report": (["report", "index", "--reports", "empty", "--out", "index.html"], "no evidence records"),
    "drift": (["drift", "compare", "reference.csv", "current.csv", "--study", "features.yaml"], "'age'"),
    "review": (["review", "list", "--records", "record.json"], "not an evidence record"),
    "model": (["model", "build-candidates", "--plan", "plan.yaml", "--prepared", "empty", "--scored", "empty",
               "--locked", "empty", "--out", "candidates"], "missing key"),
    "audit": (["audit", "witness", "--trust", "trust.json"], "trust root"),
    "keys": (["keys", "revoke", "0123", "--reason", "lost"], "user id"),
    "sign": (["sign", "--meaning", "approved", "--target", "1", "--reason", "read it"], "seq 1"),
    "repro": (["repro", "check", "--in", "empty"], "dvc.lock"),
    "serve": (["serve", "--study", "missing.yaml"], "missing.yaml"),
    "predictions": (["predictions", "export", "--out", "p.parquet", "--since", "2020-01-02", "--until", "2020-01-01"],
                    "--since"),
    "outcomes": (["outcomes", "add", "outcomes.csv"], "record_id"),
    "metrics": (["metrics", "export", "--out", "record.json/metrics.prom"], "record.json"),  # a file where a folder must be
    "monitor": (["monitor", "--study", "broken.yaml"], "not valid YAML"),
    "lab": (["lab", "empty"], "JupyterLab is not installed"),
}


def test_every_family_has_a_case():
    assert set(CASES) == set(main.commands)


@pytest.mark.parametrize("family", sorted(CASES))
def test_bad_input_is_one_paragraph_with_exit_status_2(family, workspace, monkeypatch):
    args, words = CASES[family]
    if family == "lab":  # the one bad input of `clinval lab` is an environment without JupyterLab
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jupyterlab" else real(name, *a))
    result = CliRunner().invoke(main, args, input="")
    assert result.exit_code == EXIT_ERROR, (result.stderr, result.stdout, result.exception)
    assert not isinstance(result.exception, click.exceptions.UsageError)
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n\n" not in error and "Traceback" not in result.output, error
    assert "internal error" not in result.output and words in error, error
