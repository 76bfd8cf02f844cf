"""Shared pieces of the validity benchmarks: rates with Monte Carlo intervals, the table
they print, and the previous version of a clinval module for the "before" column.

"Before" is clinval as it was at commit ``BEFORE`` (the last one before issue 11's
changes), loaded from git history, so both columns run on the same simulated data in the
same process.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from clinval.intervals import rate_interval

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "f716744"


def previous(module: str) -> ModuleType:
    """``clinval.<module>`` as it was at commit ``BEFORE`` (its own imports resolve to today's package)."""
    name = f"clinval_before_{module}"
    if name in sys.modules:
        return sys.modules[name]
    source = subprocess.run(["git", "show", f"{BEFORE}:src/clinval/{module}.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # dataclasses look their module up while the class is built
    exec(compile(source, f"{BEFORE}:src/clinval/{module}.py", "exec"), loaded.__dict__)
    return loaded


@dataclass
class Rate:
    """A share of simulated periods with its 95% Monte Carlo interval (Wilson)."""

    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.hits += bool(hit)
        self.total += 1

    def __str__(self) -> str:
        if self.total == 0:
            return "n/a"
        low, high = rate_interval(self.hits, self.total)
        return f"{self.hits / self.total:6.1%} [{low:5.1%}, {high:5.1%}]"


@dataclass
class Row:
    """One line of the validity table."""

    item: str
    scenario: str
    measure: str
    before: Rate | str
    after: Rate | str
    target: str


def print_table(rows: list[Row], *, title: str) -> None:
    print(f"\n{title}")
    widths = (5, 46, 34, 24, 24, 16)
    header = ("item", "scenario", "measure", "before", "after", "target")
    line = " | ".join(f"{h:<{w}}" for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = (r.item, r.scenario, r.measure, str(r.before), str(r.after), r.target)
        print(" | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)), flush=True)
    print("Brackets: 95% Monte Carlo interval of the simulated share (Wilson). "
          f"'before' = clinval at commit {BEFORE}, run on the same simulated data.")
