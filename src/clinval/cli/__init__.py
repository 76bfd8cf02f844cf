"""The ``clinval`` command.

Each subcommand lives in a module named for its concern (``pipeline``: the data stages;
``notebook``: evidence records and the index; ``audit``: ledger, keys, signatures;
``drift``: ad-hoc comparisons). Errors a user can fix are printed as one paragraph and
exit with status 2; set ``CLINVAL_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys

import click

from clinval import __version__
from clinval.cli._common import UserError


class _Group(click.Group):
    """A click group that turns expected errors into a clear message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if os.environ.get("CLINVAL_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="clinval")
def main() -> None:
    """clinval: a reproducible validation workbook for clinical risk models.

    The pipeline (`dvc repro`) calls `prepare`, `train`, `score` and `notebook run`;
    reviewers use `audit`, `sign` and `review`. Every subcommand has --help.
    """


def _register() -> None:
    from clinval.cli.audit import audit, keys, sign
    from clinval.cli.drift import drift
    from clinval.cli.notebook import notebook, report
    from clinval.cli.pipeline import prepare, score, train

    for command in (prepare, train, score, notebook, report, drift, audit, keys, sign):
        main.add_command(command)


_register()
