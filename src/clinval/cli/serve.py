"""``clinval serve``: the scoring service, and the machine signer the live loop uses."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clinval import layout
from clinval.cli._common import (
    DEFAULT_APPROVALS,
    DEFAULT_STUDY,
    OUTPUT_DIR,
    PARAMS_FILE,
    LazyValue,
    UserError,
    friendly,
    ledger_options,
    load_params,
    machine_key,
    open_ledger,
)

__all__ = ["build_service", "live_options", "machine_signer", "serve"]

DEFAULT_LOG_DIR = layout.PREDICTIONS
GIL_SWITCH_SECONDS = 0.0002
"""Python's thread switch interval while serving (measured: 3x the throughput of the 5 ms default at concurrency 8)."""
MSG_NO_SIGNER = (
    "no private key for actor {actor!r} on this machine; the live loop signs prediction_batch entries "
    "with it. Pass --create-signer (uses ${env}) or run `clinval keys init --id {actor} --name \"...\"`"
)
MSG_SIGNER_CONFLICT = (
    "actor {actor!r} already has a registered key that is not this machine's key {key}; use that key "
    "here or register this one with an endorsement (`clinval keys init --endorse-by ...`)"
)


def machine_signer(*, actor: str, printed_name: str, create: bool, ledger):
    """Unlock (or, with ``create``, create) the machine identity that signs log entries,
    and register its key in the ledger if this is the actor's first key."""
    from clinval.ledger import register_key

    signer, _ = machine_key(actor, printed_name=printed_name, create=create, no_signer=MSG_NO_SIGNER)
    registered = ledger.registered_keys()
    if not any(k.key_id == signer.key_id for k in registered):
        if any(k.user_id == actor for k in registered):
            raise UserError(MSG_SIGNER_CONFLICT.format(actor=actor, key=signer.key_id))
        register_key(ledger, signer=signer)
    return signer


def live_options(command):
    """Options every live-loop command shares: study, log folder, root, signer, ledger."""
    options = [
        click.option("--study", "study_path", type=PARAMS_FILE, default=DEFAULT_STUDY, show_default=True,
                     help="The study: the request schema comes from it."),
        click.option("--log-dir", default=DEFAULT_LOG_DIR, show_default=True, type=OUTPUT_DIR,
                     help="The prediction log folder (inside --root)."),
        click.option("--root", default=".", show_default=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
                     help="Repository root; ledger paths are relative to it."),
        click.option("--actor", default=LazyValue("clinval.signing", "PIPELINE_ACTOR"), show_default=True,
                     help="Machine identity that signs prediction_batch entries."),
        click.option("--printed-name", default=LazyValue("clinval.signing", "PIPELINE_NAME"), show_default=True,
                     help="Printed name if --create-signer creates the key."),
        click.option("--create-signer", is_flag=True, help="Create the --actor key with $CLINVAL_PASSPHRASE if this machine has none."),
    ]
    for option in reversed(options):
        command = option(command)
    return ledger_options(command)


def build_service(*, study_path: str, log_dir: Path, root: Path, signer: Callable[[], Any], ledger_path: Path, checkpoint_dir: Path,
                  keys_dir: Path, locked: str = layout.LOCKED_MODEL, reports_dir: Path | None = None,
                  approvals_dir: Path | None = None, settings=None):
    """Check everything the service needs and return it ready to serve (log recovered).

    ``signer`` is called only once the ledger has verified and the model matches it.

    Raises
    ------
    clinval.serve.model_in_force.ServeRefused
        If the ledger does not verify or the model differs from its ledger entry.
    """
    from clinval import data
    from clinval.metrics import ServiceMetrics
    from clinval.predlog import LogSettings, PredictionLog
    from clinval.serve.app import Service
    from clinval.serve.model_in_force import model_in_force
    from clinval.serve.schema import request_schema

    study = data.study_from_params(load_params(study_path), params_path=str(study_path))
    model = model_in_force(root=root, ledger_path=ledger_path, checkpoint_dir=checkpoint_dir, schema=study.schema,
                           study_path=study_path, locked=locked)
    requests = request_schema(study.schema, never_features=study.never_features, study_path=study_path)
    metrics = ServiceMetrics(model_id=model.id, model_sha256=model.sha256, reports_dir=reports_dir, approvals_dir=approvals_dir)
    log = PredictionLog(directory=log_dir, root=root, ledger=open_ledger(ledger_path, checkpoint_dir, keys_dir), signer=signer(),
                        model_id=model.id, model_sha256=model.sha256, numeric=study.schema.numeric,
                        categorical=study.schema.categorical, settings=settings or LogSettings(), on_commit=metrics.flushed)
    metrics.watch_log(log.stats)
    log.start()
    return Service(model=model, requests=requests, log=log, metrics=metrics)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--locked", type=click.Path(file_okay=False), default=layout.LOCKED_MODEL, show_default=True, help="The locked model folder as the ledger records it.")
@click.option("--reports", "reports_dir", default=layout.REPORTS, show_default=True, type=OUTPUT_DIR,
              help="Evidence records whose monitored metrics /metrics shows.")
@click.option("--approvals", "approvals_dir", default=DEFAULT_APPROVALS, show_default=True, type=OUTPUT_DIR,
              help="Signed decisions (an alert with one is no longer open).")
@click.option("--segment-records", default=100_000, show_default=True, type=click.IntRange(min=1), help="Close a log segment after this many predictions.")
@click.option("--segment-seconds", default=3600.0, show_default=True, type=click.FloatRange(min=0.01), help="Close a log segment this long after its first write.")
@live_options
@friendly
def serve(host, port, locked, reports_dir, approvals_dir, segment_records, segment_seconds, study_path, log_dir, root, actor,
          printed_name, create_signer, ledger_path, checkpoint_dir, keys_dir) -> None:
    """Answer POST /v1/predict with the model in force; log every answer before it is sent.

    The model in force is the latest promoted model in the audit ledger, else the locked
    one; it must match the digest its signed ledger entry holds, and the ledger must
    verify, or the service does not start. Segments of the prediction log left by an
    earlier run (a crash, kill -9) are recovered and sealed first. Also serves
    GET /healthz, GET /metrics (Prometheus) and POST /v1/log/roll (seal the open segment).
    """
    import uvicorn

    from clinval.predlog import LogSettings
    from clinval.serve.app import create_app
    from clinval.serve.model_in_force import ServeRefused

    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    try:
        service = build_service(study_path=study_path, log_dir=log_dir, root=root, ledger_path=ledger_path,
                                signer=lambda: machine_signer(actor=actor, printed_name=printed_name, create=create_signer, ledger=ledger),
                                checkpoint_dir=checkpoint_dir, keys_dir=keys_dir, locked=locked, reports_dir=reports_dir,
                                approvals_dir=approvals_dir,
                                settings=LogSettings(max_segment_records=segment_records, max_segment_seconds=segment_seconds))
    except ServeRefused as refused:
        raise UserError(f"refusing to start: {refused}") from None
    recovery = service.log.stats.recovery
    if recovery is not None and recovery.sealed:
        click.echo(f"recovered {recovery.records} predictions in {len(recovery.sealed)} segment(s) left by an earlier run "
                   f"({recovery.torn_bytes} torn bytes dropped) in {recovery.seconds:.2f} s", err=True)
    model = service.model
    click.echo(f"serving {model.id} (sha256 {model.sha256[:12]}, ledger seq {model.ledger_seq}) on http://{host}:{port}; "
               f"log {log_dir}", err=True)
    # the log's writer thread must get the GIL back right after each flush, not after the 5 ms default
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    uvicorn.run(create_app(service), host=host, port=port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)
