"""The ``clinval`` command.

Each subcommand lives in a module named for its concern (``pipeline``: the data stages;
``notebook``: evidence records and the index; ``audit``: ledger, keys, signatures;
``drift``: ad-hoc comparisons; ``lab``: JupyterLab). Errors a user can fix are printed as
one paragraph and exit with status 2, a bug in clinval as one ``internal error`` line with
status 70 (``clinval.cli._common.friendly``); set ``CLINVAL_DEBUG=1`` to see the traceback.

Every module here imports only click and the standard library at the top; a command
imports what it computes with when it runs, so ``clinval --help`` answers at once.
"""

from __future__ import annotations

import click

from clinval import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="clinval")
def main() -> None:
    """clinval: a reproducible validation workbook for clinical risk models.

    The pipeline (`dvc repro`) calls `prepare`, `train`, `score` and `notebook run`;
    reviewers use `audit`, `sign` and `review`; data scientists `lab` and `drift compare`.
    Every subcommand has --help.
    """


def _register() -> None:
    from clinval.cli.audit import audit, keys, sign
    from clinval.cli.drift import drift
    from clinval.cli.lab import lab
    from clinval.cli.metrics import metrics
    from clinval.cli.model import model
    from clinval.cli.monitor import monitor
    from clinval.cli.notebook import notebook
    from clinval.cli.pipeline import prepare, score, study, train
    from clinval.cli.report import report
    from clinval.cli.repro import repro
    from clinval.cli.review import review
    from clinval.cli.predictions import outcomes, predictions
    from clinval.cli.serve import serve
    from clinval.cli.stream import stream_command  # noqa: F401 - registers `clinval drift stream` on the drift group

    for command in (study, prepare, train, score, notebook, report, drift, review, model, audit, keys, sign, repro,
                    serve, predictions, outcomes, metrics, monitor, lab):
        main.add_command(command)


_register()
