"""``clinval repro``: does a fresh run reproduce the committed dvc.lock?"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import click

from clinval.cli._common import friendly


@click.group()
def repro() -> None:
    """Reproducibility of the pipeline's outputs."""


@repro.command("check")
@click.option("--in", "checkout", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run in this clean checkout instead of a temporary clone of the repository.")
@click.option("--target", "targets", multiple=True, metavar="STAGE",
              help="Re-run only up to this stage (repeatable) and compare its outputs; default: the whole pipeline.")
@click.option("--rtol", type=float, default=None, help="Relative tolerance for numbers (default 1e-4).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance for numbers near zero (default 1e-6).")
@click.option("--keep", is_flag=True, help="Keep the temporary clone and print where it is.")
@friendly
def check(checkout: Path | None, targets: tuple[str, ...], rtol: float | None, atol: float | None, keep: bool) -> None:
    """Re-run the pipeline from nothing and compare every output with the committed dvc.lock.

    Prints `identical` per output, or for each differing file the largest absolute and
    relative change of any number in it (JSON twins, Parquet tables, model cards) and
    every decision that moved (drifted flags, alerts, criteria, promotions). Exit status:
    0 identical, 1 numbers differ within the tolerance and no decision differs, 2 a
    decision differs, a number moved beyond the tolerance or an output could not be compared.
    """
    from clinval import repro as repro_lib

    root = Path.cwd()
    committed = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=root, capture_output=True, text=True)
    if committed.returncode != 0:
        raise FileNotFoundError("dvc.lock is not committed here: run this in the repository whose results you want to check.")
    scratch = None
    if checkout is None:
        scratch = Path(tempfile.mkdtemp(prefix="clinval-repro-"))
        checkout = repro_lib.fresh_clone(root, scratch / "clone")
        click.echo(f"clean clone of HEAD in {checkout}", err=True)
    run = repro_lib.run_pipeline(checkout, targets=targets)
    if run.returncode != 0:
        raise click.ClickException(f"the pipeline failed in {checkout} (exit {run.returncode}); {run.stderr or ''}".strip())
    report = repro_lib.compare_runs(
        committed_lock=committed.stdout, reference=root, fresh=checkout,
        stages=_stages(checkout, targets) if targets else None,
        rtol=repro_lib.DEFAULT_RTOL if rtol is None else rtol, atol=repro_lib.DEFAULT_ATOL if atol is None else atol,
    )
    for line in report.lines():
        click.echo(line)
    if scratch is not None and not keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    elif scratch is not None:
        click.echo(f"kept {checkout}", err=True)
    raise click.exceptions.Exit(int(report.verdict))


@repro.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@friendly
def env(as_json: bool) -> None:
    """The numeric environment this machine computes in: BLAS kernel and threads, NumPy's
    SIMD dispatch, glibc's libm variant. Pinned unless CLINVAL_NUMERIC_ENV=native."""
    import json

    from clinval.numeric_env import describe

    info = describe()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    state = "pinned" if info["pinned"] else ("native (CLINVAL_NUMERIC_ENV=native)" if info["applies"] else f"not pinned on {info['machine']}")
    click.echo(f"numeric environment: {state}")
    click.echo(f"NumPy {info['numpy']}: baseline {', '.join(info['numpy_baseline'])}; dispatched SIMD in use: "
               f"{', '.join(info['numpy_dispatch_in_use']) or 'none'}")
    click.echo(f"glibc tunables: {info['glibc_tunables'] or 'none'}")
    for lib in info["libraries"]:
        kernel = lib["architecture"] or "-"
        kernel += " (OpenBLAS's name for its Prescott kernel)" if kernel == "Katmai" else ""
        click.echo(f"{lib['internal_api']} {lib['version'] or ''} ({lib['prefix']}): kernel {kernel}, {lib['num_threads']} thread(s)")


def _stages(checkout: Path, targets: tuple[str, ...]) -> list[str]:
    """The targets and every stage upstream of them (what `dvc repro TARGET` ran)."""
    import yaml

    stages = yaml.safe_load((checkout / "dvc.lock").read_text())["stages"]
    outputs = {o["path"]: name for name, spec in stages.items() for o in spec.get("outs", [])}
    seen, todo = set(), list(targets)
    while todo:
        name = todo.pop()
        if name in seen or name not in stages:
            continue
        seen.add(name)
        todo.extend(outputs[d["path"]] for d in stages[name].get("deps", []) if d["path"] in outputs)
    return sorted(seen)
