"""Entry point of the ``clinval`` command (and ``python -m clinval``).

It pins the numeric environment (:mod:`clinval.numeric_env`) before anything imports
numpy, then hands over to the command-line interface in :mod:`clinval.cli`.
"""

from __future__ import annotations


def main() -> None:
    """Pin the numeric environment (re-executing once if needed), then run the CLI."""
    from clinval.numeric_env import pin

    pin()
    from clinval.cli import main as cli

    cli(prog_name="clinval")  # after the re-execution argv[0] is clinval/__main__.py: say what the user typed
