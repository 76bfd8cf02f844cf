"""``clinval --help`` and ``clinval review list`` must not load the numeric stack.

Importing pandas, scipy and statsmodels takes seconds; a command that does not compute
must not pay for it. Checked without timing: a fresh interpreter runs the command and
reports which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "pandas", "scipy", "statsmodels", "sklearn", "matplotlib", "pyarrow", "rich")
"""Modules no help text and no ledger-only command may load."""

_PROBE = """
import json, sys
from clinval.cli import main
code = main({args}, standalone_mode=False, prog_name="clinval")
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def _loaded(args: list[str], cwd) -> list[str]:
    script = _PROBE.format(args=args, heavy=HEAVY)
    run = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_importing_the_command_loads_no_heavy_module(tmp_path):
    run = subprocess.run([sys.executable, "-c", f"import sys, clinval.cli; print(sorted(m for m in {HEAVY} if m in sys.modules))"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def _groups():
    from click import Group

    from clinval.cli import main

    return [name for name, command in main.commands.items() if isinstance(command, Group)]


@pytest.mark.parametrize("args", [["--help"], *[[group, "--help"] for group in _groups()]], ids=" ".join)
def test_help_loads_no_heavy_module(args, tmp_path):
    assert _loaded(args, tmp_path) == []


def test_review_list_on_an_empty_queue_loads_no_heavy_module(tmp_path):
    (tmp_path / "reports").mkdir()
    for name in ("02_drift_analysis", "03_fairness_audit"):
        (tmp_path / "reports" / f"{name}.json").write_text(json.dumps({"alerts": []}))
    assert _loaded(["review", "list"], tmp_path) == []
