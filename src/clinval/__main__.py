"""``python -m clinval`` is the ``clinval`` command."""

from clinval._launch import main

main()
