"""Evidence records: run a notebook into reports/."""

from __future__ import annotations

from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import OUTPUT_DIR, PARAMS_FILE, friendly, load_params


@click.group()
def notebook() -> None:
    """Run a notebook into an evidence record (ipynb, html, json)."""


@notebook.command("run")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--params", "params_files", type=PARAMS_FILE, multiple=True, metavar="FILE",
              help="A params YAML whose top-level keys are notebook parameters (repeatable).")
@click.option("--reports", type=OUTPUT_DIR, default=layout.REPORTS, show_default=True, help="Folder for the record.")
@click.option("--title", default=None, help="Title of the HTML record (default: the notebook's name).")
@friendly
def run(path: Path, params_files: tuple[Path, ...], reports: Path, title: str | None) -> None:
    """Execute the notebook at PATH with papermill and write its evidence record.

    Parameters come from the params files; anything else keeps the notebook's default,
    so the pipeline and an interactive run in JupyterLab compute the same thing.
    """
    from clinval.evidence import run_notebook

    parameters: dict = {}
    for file in params_files:
        parameters.update(load_params(file))
    paths = run_notebook(path, reports_dir=reports, parameters=parameters, title=title)
    click.echo(f"wrote {paths.html} (+ .ipynb, .json)")
