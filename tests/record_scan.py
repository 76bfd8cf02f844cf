"""Scan published evidence records for anything that shows or recovers a small count.

Used by the end-to-end test on a clean clone and by ``test_record_scan.py`` on this
checkout's reports/. A finding is (file, what, excerpt)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

SMALL_COUNT_TEXT = re.compile(
    r"(?<![\w.\-–/<])(?:[0-9]|10)\s+(?:events?|non-events?|deaths?|survivors?|patients?|positives?|negatives?)\b")
NONE_OF_AN_OUTCOME = re.compile(r"\bno (?:observed )?(?:events|non-events)\b|only one outcome class")
_COUNT_KEYS = ("n", "events", "non_events", "count")
_RATES_OF_ALL = ("prevalence", "selection_rate")  # rates whose denominator is the group's n


def _walk(value, key: str = "") -> Iterator[tuple[str, object, object]]:
    if isinstance(value, dict):
        yield key, value, None
        for k, v in value.items():
            yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)
    else:
        yield key, None, value


def _json_findings(path: Path, record: dict, k: int) -> Iterator[tuple[str, str, str]]:
    for key, row, leaf in _walk(record.get("values", record)):
        if row is None:
            if (isinstance(leaf, int) and not isinstance(leaf, bool) and 0 < leaf < k
                    and (key in _COUNT_KEYS or key.startswith("n_") or key.endswith("_events"))):
                yield path.name, f"count {key} = {leaf}", ""
            continue
        n, value = row.get("n"), row.get("value")
        if not isinstance(n, int) or isinstance(n, bool):
            continue
        if row.get("metric") in _RATES_OF_ALL and isinstance(value, float):
            count = round(value * n)
            if count < k or n - count < k:
                yield path.name, f"{row['metric']} {value:.3f} of n = {n} reveals {count}", json.dumps(row)[:200]
        if {"observed", "mean_predicted"} <= set(row) and isinstance(row.get("observed"), float):
            events = round(row["observed"] * n)
            if events < k or n - events < k:
                yield path.name, f"calibration bin of n = {n} with {events} events", json.dumps(row)[:200]


def scan(reports: Path, *, min_cell_size: int = 11) -> list[tuple[str, str, str]]:
    """Every finding in reports/*.html, *.json and *.ipynb."""
    found: list[tuple[str, str, str]] = []
    for path in sorted([*reports.glob("*.html"), *reports.glob("*.json"), *reports.glob("*.ipynb")]):
        text = path.read_text()
        for pattern in (SMALL_COUNT_TEXT, NONE_OF_AN_OUTCOME):
            for match in pattern.finditer(text):
                found.append((path.name, match.group(0), text[max(0, match.start() - 80):match.end() + 40]))
        if path.suffix == ".json":
            found += _json_findings(path, json.loads(text), min_cell_size)
    return found
