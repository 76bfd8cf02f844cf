"""Entry point of the ``clinval`` command (and ``python -m clinval``).

It pins the numeric environment (:mod:`clinval.numeric_env`) before anything imports
numpy, then hands over to the command-line interface in :mod:`clinval.cli`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Pin the numeric environment (re-executing once if needed), then run the CLI."""
    from clinval.numeric_env import pin

    pin()
    # jsonschema (imported by nbformat, so by papermill and nbconvert) imports rfc3987_syntax,
    # which compiles ~38 Lark grammars at import: 1-3 s per notebook stage for the "iri" format,
    # which no notebook schema uses (python-jsonschema/jsonschema#1428). Without it jsonschema
    # leaves that one format unchecked.
    sys.modules.setdefault("rfc3987_syntax", None)
    from clinval.cli import main as cli

    cli(prog_name="clinval")  # after the re-execution argv[0] is clinval/__main__.py: say what the user typed
