"""``python -m clinval`` is the ``clinval`` command."""

from clinval.cli import main

main()
