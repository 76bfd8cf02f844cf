"""``clinval predictions`` and ``clinval outcomes``: read the prediction log, add outcomes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from clinval.cli._common import (
    DEFAULT_STUDY,
    OUTPUT_DIR,
    OUTPUT_FILE,
    PARAMS_FILE,
    UserError,
    friendly,
    ledger_options,
    load_params,
    open_ledger,
)
from clinval.cli.serve import DEFAULT_LOG_DIR, live_options, machine_signer

__all__ = ["outcomes", "predictions"]

MSG_EMPTY_WINDOW = "--since {since} is not before --until {until}: no prediction can lie in that window."


@click.group()
def predictions() -> None:
    """The prediction log written by `clinval serve`: seal and export it."""


@predictions.command("export")
@click.option("--out", required=True, type=OUTPUT_FILE, help="Parquet file to write.")
@click.option("--since", type=click.DateTime(), default=None, help="Only predictions at or after this UTC time.")
@click.option("--until", type=click.DateTime(), default=None, help="Only predictions before this UTC time.")
@click.option("--sealed-only", is_flag=True, help="Leave out predictions of open segments (not yet sealed in the ledger).")
@click.option("--log-dir", default=DEFAULT_LOG_DIR, show_default=True, type=OUTPUT_DIR, help="The prediction log folder.")
@click.option("--root", default=".", show_default=True, type=click.Path(file_okay=False, exists=True, path_type=Path), help="Repository root.")
@ledger_options
@friendly
def export(out: Path, since: datetime | None, until: datetime | None, sealed_only: bool, log_dir: Path, root: Path,
           ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Write every logged prediction to one Parquet file.

    Sealed segments are checked against the digests their prediction_batch entries hold
    (an edited or deleted segment is refused); predictions of open segments follow with
    sealed = false. Columns: prediction_id, request_id, time (UTC), model_id,
    model_sha256, risk, record_id, patient_id, unseen, the features, segment, sealed,
    ledger_seq.
    """
    from clinval._io import atomic_write_bytes
    from clinval.predlog import export_predictions

    if since is not None and until is not None and since >= until:
        raise UserError(MSG_EMPTY_WINDOW.format(since=since, until=until))
    frame = export_predictions(directory=log_dir, root=root, ledger=open_ledger(ledger_path, checkpoint_dir, keys_dir),
                               since=since, until=until, include_open=not sealed_only)
    atomic_write_bytes(out, frame.to_parquet(index=False))
    sealed = int(frame["sealed"].sum()) if len(frame) else 0
    click.echo(f"exported {len(frame)} predictions to {out} ({sealed} sealed in the ledger, {len(frame) - sealed} in open segments)")


@predictions.command("seal")
@live_options
@friendly
def seal(study_path, log_dir, root, actor, printed_name, create_signer, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Seal every segment no running service holds (left by a crash or a stopped service)."""
    from clinval.predlog import recover

    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    signer = machine_signer(actor=actor, printed_name=printed_name, create=create_signer, ledger=ledger)
    report = recover(directory=log_dir, root=root, ledger=ledger, signer=signer)
    click.echo(f"sealed {len(report.sealed)} segment(s), {report.records} predictions ({report.torn_bytes} torn bytes dropped); "
               f"{len(report.skipped_in_use)} in use by a running service")


@click.group()
def outcomes() -> None:
    """Observed outcomes that arrive after the predictions."""


@outcomes.command("add")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--study", "study_path", type=PARAMS_FILE, default=DEFAULT_STUDY, show_default=True, help="The study: names the target column.")
@click.option("--log-dir", default=DEFAULT_LOG_DIR, show_default=True, type=OUTPUT_DIR, help="The prediction log folder.")
@click.option("--root", default=".", show_default=True, type=click.Path(file_okay=False, exists=True, path_type=Path), help="Repository root.")
@ledger_options
@friendly
def add(file: Path, study_path: Path, log_dir: Path, root: Path, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Add observed outcomes from FILE (CSV or Parquet: record_id and the study's target column).

    Outcomes are joined to predictions by the record_id the client passed through.
    Adding the same outcomes again adds nothing; a different outcome for a record that
    already has one is refused. `clinval monitor` turns them into labelled periods.
    """
    import pandas as pd

    from clinval import data
    from clinval.predlog import add_outcomes, export_predictions

    study = data.study_from_params(load_params(study_path), params_path=str(study_path))
    target = study.schema.target
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"{file}: unsupported file type {file.suffix!r}; use .csv or .parquet")
    try:
        frame = (pd.read_csv(file, dtype=str, keep_default_na=True, encoding="utf-8-sig") if suffix == ".csv"
                 else pd.read_parquet(file))
    except Exception as error:  # noqa: BLE001 - whatever the reader says, it is about this file
        raise UserError(f"{file}: could not be read: {str(error).splitlines()[0]}") from error
    logged = export_predictions(directory=log_dir, root=root, ledger=open_ledger(ledger_path, checkpoint_dir, keys_dir))
    known = logged["record_id"].dropna().astype(str).tolist() if len(logged) else []
    result = add_outcomes(frame, source=str(file), directory=log_dir, target=target, known_records=known)
    if result.path is None:
        click.echo(f"{file}: nothing new ({result.already_known} outcomes already stored)")
        return
    click.echo(f"{file}: added {result.added} outcomes to {result.path} ({result.matched} match logged predictions, "
               f"{result.added - result.matched} do not yet; {result.already_known} were already stored)")
