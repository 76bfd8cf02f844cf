"""``clinval monitor``: the scheduled job that turns the prediction log into production periods.

Run from cron or a systemd timer (docs/live.md). Steps, each a no-op when nothing changed:

1. close the log up to now: ask the running service to seal its open segment
   (``--service``), then seal every segment no service holds;
2. turn the sealed predictions of every period that has ended, with the outcomes known
   so far, into ``live-<period>.parquet`` in the study's source folder (rewritten only
   when its rows change, e.g. when outcomes arrive); extend ``periods.production.to``
   in the study when a new period lies beyond it;
3. ``dvc repro`` (the source folder is an input of ``prepare``), then record the run in
   the audit ledger (``clinval audit record``).

Exit status: 0 nothing fired; 1 a trigger fired (this run recorded a new drift or
fairness alert); 2 an error in the input or a refused step; 70 a bug in clinval.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from clinval.cli._common import UserError, friendly, load_params, open_ledger
from clinval.cli.serve import live_options, machine_signer

__all__ = ["EXIT_TRIGGER_FIRED", "monitor"]

EXIT_TRIGGER_FIRED = 1
MSG_NOT_A_FOLDER = (
    "{study}: source.path {path!r} is a single file; the monitor adds each production period as a new Parquet "
    "file to a folder source. Point source.path at a folder of Parquet files (the current data as one file in it)"
)
MSG_NO_TEMPLATE = "{path}: the folder holds no Parquet file to take the study's columns from; put the study's data there first"
MSG_SERVICE = "could not ask the service at {url} to seal its open segment: {error}"
MSG_REPRO = "`dvc repro` failed (exit {code}); nothing was recorded. Its output ends:\n{tail}"
MSG_BOUND = "{study}: cannot extend periods.production.to to {period}: {reason}"


@click.command()
@click.option("--service", "service_url", default=None, help="URL of a running `clinval serve` (e.g. http://127.0.0.1:8000) whose open segment is sealed first.")
@click.option("--through", type=click.DateTime(), default=None, help="Materialise periods that ended by this UTC time (default: now).")
@click.option("--repro/--no-repro", default=True, show_default=True, help="Run `dvc repro` and record the run in the ledger.")
@live_options
@friendly
def monitor(service_url, through, repro, study_path, log_dir, root, actor, printed_name, create_signer, ledger_path,
            checkpoint_dir, keys_dir) -> None:
    """Seal the prediction log, add the periods that ended to the study, re-run and record.

    Exits 1 when a trigger fired (a new drift or fairness alert was recorded), 0 when
    not, 2 on an error in the input, 70 on a bug in clinval. Running it again with
    nothing new adds nothing.
    """
    import httpx
    import pandas as pd

    from clinval import data
    from clinval.ledger import record_run
    from clinval.predlog import LIVE_PREFIX, export_predictions, live_periods, read_outcomes, recover

    study = data.study_from_params(load_params(study_path), params_path=str(study_path))
    folder = root / study.source_path
    if folder.is_file():
        raise UserError(MSG_NOT_A_FOLDER.format(study=study_path, path=study.source_path))
    others = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(LIVE_PREFIX)) if folder.exists() else []
    if not others:
        raise UserError(MSG_NO_TEMPLATE.format(path=study.source_path))
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    signer = machine_signer(actor=actor, printed_name=printed_name, create=create_signer, ledger=ledger)

    # 1. close the log up to now
    if service_url:
        try:
            httpx.post(f"{service_url.rstrip('/')}/v1/log/roll", timeout=120.0).raise_for_status()
        except httpx.HTTPError as error:
            raise UserError(MSG_SERVICE.format(url=service_url, error=error)) from None
    sealed = recover(directory=log_dir, root=root, ledger=ledger, signer=signer)
    click.echo(f"log: sealed {len(sealed.sealed)} segment(s) ({sealed.records} predictions); "
               f"{len(sealed.skipped_in_use)} open in a running service")

    # 2. the periods that ended, as study rows
    import pyarrow.parquet as pq

    columns = pq.read_schema(others[0]).names
    taken: set[str] = set()
    for path in others:
        times = pd.read_parquet(path, columns=[study.schema.time])[study.schema.time]
        taken |= set(_source_periods(times, study))
    predictions = export_predictions(directory=log_dir, root=root, ledger=ledger, include_open=False)
    outcomes = read_outcomes(log_dir, target=study.schema.target)
    periods = live_periods(predictions, outcomes=outcomes, study=study, columns=columns,
                           through=through.replace(tzinfo=UTC) if through else datetime.now(UTC), taken=taken)
    for reason, count in periods.skipped.items():
        click.echo(f"  {count} prediction(s) left out: {reason}")
    changed = [period for period, frame in periods.frames.items() if _write_if_changed(frame, folder / f"{LIVE_PREFIX}{period}.parquet")]
    for period in periods.frames:
        labelled = int(periods.frames[period][study.schema.target].notna().sum())
        state = "written" if period in changed else "unchanged"
        click.echo(f"period {period}: {len(periods.frames[period])} records, {labelled} with outcomes ({state})")
    if periods.frames:
        _extend_production(Path(study_path), study, max(periods.frames))

    # 3. re-run and record
    if not repro:
        return
    run = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, capture_output=True, text=True)
    if run.returncode != 0:
        raise UserError(MSG_REPRO.format(code=run.returncode, tail=(run.stdout + run.stderr)[-2000:]))
    result = record_run(ledger, signer=signer, root=root)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    fired = [e for e in result.appended if e.kind in ("drift_alert", "fairness_alert")]
    click.echo(f"recorded {len(result.appended)} ledger entr{'y' if len(result.appended) == 1 else 'ies'}; "
               f"{len(fired)} new alert{'' if len(fired) == 1 else 's'}")
    for entry in fired:
        click.echo(f"  ALERT {entry.body.get('alert_id')}: {entry.body.get('summary', '')}")
    if fired:
        raise click.exceptions.Exit(EXIT_TRIGGER_FIRED)


def _source_periods(times, study) -> list[str]:
    """Periods that a source file's time column covers (as :func:`clinval.data.prepare` cuts them)."""
    import pandas as pd

    if study.period_rule == "value":
        values = pd.to_numeric(times, errors="coerce").dropna() + study.time_offset
        return sorted({str(int(v)) if float(v).is_integer() else str(v) for v in values})
    stamps = pd.to_datetime(times, errors="coerce").dropna()
    return sorted(set(stamps.dt.to_period({"year": "Y", "quarter": "Q", "month": "M"}[study.period_rule]).astype(str)))


def _write_if_changed(frame, path: Path) -> bool:
    """Write ``frame`` as Parquet unless the file already holds exactly these bytes
    (the same rows give the same bytes), so an unchanged period never re-runs the pipeline."""
    from clinval._io import atomic_write_bytes

    content = frame.to_parquet(index=False)
    if path.exists() and path.read_bytes() == content:
        return False
    atomic_write_bytes(path, content)
    return True


def _extend_production(study_file: Path, study, last: str) -> None:
    """Set ``periods.production.to`` to ``last`` when it lies beyond it (comments kept)."""
    from ruamel.yaml import YAML

    current = study.production[1]
    if study.period_rule == "value":
        beyond = int(last) > int(float(current))
        value: object = int(last)
    else:
        import pandas as pd

        freq = {"year": "Y", "quarter": "Q", "month": "M"}[study.period_rule]
        beyond = pd.Period(last, freq) > pd.Period(str(current), freq)
        value = last
    if not beyond:
        return
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(study_file.read_text())
    try:
        document["periods"]["production"]["to"] = value
    except (KeyError, TypeError) as error:
        raise UserError(MSG_BOUND.format(study=study_file, period=last, reason=error)) from None
    with open(study_file, "w") as handle:
        yaml.dump(document, handle)
    click.echo(f"{study_file}: periods.production.to {current} -> {value}")
