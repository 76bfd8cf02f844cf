"""``clinval lab``: JupyterLab on the notebooks, in the pinned numeric environment.

Three things make JupyterLab fit the workbook:

* the server runs in the environment ``clinval`` pins (:mod:`clinval.numeric_env`), so a
  kernel computes the same bytes as the pipeline's papermill runs;
* ``--allow-root`` is passed when the user is root (a container, a fresh VM): Jupyter
  refuses to start as root without it;
* saving a notebook keeps its committed notebook-level metadata. On opening, JupyterLab
  sets ``kernelspec`` and ``language_info`` to what the running kernel reports
  (``"Python 3 (ipykernel)"``, the Python version of this machine, ...) and autosaves, so
  merely opening a notebook would change its committed bytes. The server's pre-save hook
  :func:`keep_notebook_metadata` writes :data:`NOTEBOOK_METADATA` instead, the metadata
  every committed notebook carries (``tests/test_cli_lab.py`` checks both).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from clinval.cli._common import UserError, friendly

__all__ = ["NOTEBOOK_METADATA", "PRE_SAVE_HOOK", "keep_notebook_metadata", "lab", "lab_argv"]

NOTEBOOK_METADATA: Mapping[str, Mapping[str, str]] = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
"""Notebook-level metadata of every committed notebook; a save from JupyterLab writes exactly this."""

PRE_SAVE_HOOK = "clinval.cli.lab.keep_notebook_metadata"
"""Import string of the hook, as the server's ``ContentsManager.pre_save_hook`` setting takes it."""

MSG_NO_LAB = (
    "JupyterLab is not installed in this environment (it is the `lab` dependency group, part of `make setup`): "
    "run `make setup`, or `.tools/bin/uv sync --frozen --group lab`, then `make lab`"
)
MSG_NO_OUTPUTS = "warning: {path} does not exist yet: the notebooks read the pipeline's outputs, so run `make run` first"


def keep_notebook_metadata(*, model: dict[str, Any], **_: Any) -> None:
    """Jupyter server pre-save hook: write :data:`NOTEBOOK_METADATA` in place of the running kernel's.

    Only Python notebooks are touched (``kernelspec.name`` python3 or absent); other
    notebook metadata and every cell are saved as JupyterLab sends them.
    """
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    metadata = model["content"].setdefault("metadata", {})
    if metadata.get("kernelspec", {}).get("name", NOTEBOOK_METADATA["kernelspec"]["name"]) != "python3":
        return
    for key, value in NOTEBOOK_METADATA.items():
        metadata[key] = dict(value)


def lab_argv(*, notebooks: Path, extra: Sequence[str] = (), as_root: bool) -> list[str]:
    """The JupyterLab command line: this interpreter, the metadata hook, ``--allow-root`` for root."""
    return [sys.executable, "-m", "jupyterlab", f"--ContentsManager.pre_save_hook={PRE_SAVE_HOOK}",
            *(["--allow-root"] if as_root else []), *extra, str(notebooks)]


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("notebooks", type=click.Path(file_okay=False, exists=True, path_type=Path), default="notebooks")
@click.argument("jupyter_args", nargs=-1, type=click.UNPROCESSED)
@friendly
def lab(notebooks: Path, jupyter_args: tuple[str, ...]) -> None:
    """Open JupyterLab on NOTEBOOKS (default notebooks/) in the pinned numeric environment.

    Saving a notebook keeps its committed kernel metadata, so opening one changes no
    committed byte; as root, --allow-root is passed. Other arguments go to JupyterLab
    (e.g. --no-browser, --port 8890). The notebooks read the pipeline's outputs: run
    `make run` first.
    """
    if importlib.util.find_spec("jupyterlab") is None:
        raise UserError(MSG_NO_LAB)
    prepared = notebooks.resolve().parent / "data" / "prepared"
    if not prepared.exists():
        click.echo(MSG_NO_OUTPUTS.format(path=prepared), err=True)
    argv = lab_argv(notebooks=notebooks, extra=jupyter_args, as_root=os.geteuid() == 0)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
