"""Disclosure control at publication: the last step before a value enters an evidence record.

:mod:`clinval.privacy` decides which *patient counts* a table may show (small cells and
their complements). A count can also be recovered from what is shown beside it: a rate
with its denominator (prevalence 0.09 of n = 23 is 2 deaths), a calibration bin's
observed rate with its size, a sentence such as "1 events and 28 non-events" or "has no
events". This module is the one place that applies the same rule to all of them, and
:func:`clinval.evidence.show` runs every shown value through :func:`publishable` before
it reaches the HTML page, the JSON twin or the executed notebook.

Rule: no published value may reveal a count of 0 to ``min_cell_size - 1`` patients with
or without an event, except a group size of 0 (an empty group identifies nobody).

Public API
----------
``publishable(value, *, min_cell_size)``   the value as it may be published (recursive).
``redact_text(text, *, min_cell_size)``    a sentence without small counts of events.
``calibration_table(y, risk, *, n_bins, confidence, min_cell_size)``
    observed against predicted risk in bins that each hold at least ``min_cell_size``
    events *and* non-events (so neither the bin's deaths nor its survivors are few).
``pool_calibration_table(table, *, min_cell_size, confidence)``
    the same pooling applied to an existing ``bin, n, mean_predicted, observed`` table.
``rate_is_publishable(count, total, *, min_cell_size)``
    whether a rate ``count / total`` may be shown beside its denominator.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from clinval.privacy import DEFAULT_MIN_CELL_SIZE, suppressed_label

__all__ = [
    "SUPPRESSED_RATE",
    "calibration_table",
    "pool_calibration_table",
    "publishable",
    "rate_is_publishable",
    "redact_text",
]

SUPPRESSED_RATE = "suppressed: fewer than {k} patients with or without the outcome here, or in a cell that would reveal them"
"""Status of a rate hidden because its numerator or complement is small."""

_COUNT_WORDS = r"(?:events?|non-events?|deaths?|survivors?|patients?|positives?|negatives?|cases?)"
_SMALL_COUNT = re.compile(rf"(?<![\w.\-–/<])(\d+)(\s+){_COUNT_WORDS}\b")
_NONE_OF = re.compile(r"\b(?:no (?:observed )?(?:events|non-events)(?: in this group)?|only events \(no non-events\))")
_ONE_CLASS = re.compile(r"only one outcome class \([^)]*\)")
_COUNT_KEYS = ("n", "events", "non_events", "count")
_CALIBRATION_COLUMNS = {"n", "mean_predicted", "observed"}


def rate_is_publishable(count: int, total: int, *, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> bool:
    """A rate may be shown beside its denominator only when both the patients counted and
    the patients not counted number at least ``min_cell_size`` (0 reveals "nobody" or "everybody")."""
    return count >= min_cell_size and total - count >= min_cell_size


def redact_text(text: str, *, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> str:
    """``text`` with every count of 0 to ``min_cell_size - 1`` events (or patients, deaths...)
    replaced by ``"<11"``, and "no events" / "only one outcome class (...)" by a statement
    that the group is too small to describe."""
    label = suppressed_label(min_cell_size)

    def small(match: re.Match) -> str:
        n = int(match.group(1))
        return match.group(0) if n >= min_cell_size else label + match.group(0)[len(match.group(1)):]

    text = _ONE_CLASS.sub(f"fewer than {min_cell_size} patients with or without the outcome", text)
    text = _NONE_OF.sub(f"fewer than {min_cell_size} patients with or without the outcome", text)
    return _SMALL_COUNT.sub(small, text)


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    from scipy import stats

    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _pool(events: np.ndarray, sizes: np.ndarray, min_cell_size: int) -> list[list[int]]:
    """Adjacent bins merged until every group holds ``min_cell_size`` events and non-events
    (one group when even that cannot be reached)."""
    groups = [[i] for i in range(events.size)]

    def short(g: list[int]) -> int:
        e, n = int(events[g].sum()), int(sizes[g].sum())
        return min(e, n - e)

    while len(groups) > 1:
        worst = min(range(len(groups)), key=lambda i: (short(groups[i]), i))
        if short(groups[worst]) >= min_cell_size:
            break
        if worst == 0:
            other = 1
        elif worst == len(groups) - 1:
            other = worst - 1
        else:
            other = worst - 1 if short(groups[worst - 1]) <= short(groups[worst + 1]) else worst + 1
        a, b = sorted((worst, other))
        groups[a:b + 1] = [groups[a] + groups[b]]
    return groups


def pool_calibration_table(table: pd.DataFrame, *, min_cell_size: int = DEFAULT_MIN_CELL_SIZE,
                           confidence: float = 0.95) -> pd.DataFrame:
    """A calibration table (``bin, n, mean_predicted, observed[, lower, upper]``) with
    adjacent bins merged until each holds ``min_cell_size`` events and non-events; the
    Wilson interval is recomputed for merged bins. A table whose whole total has fewer
    events or non-events than that is returned empty: no point may be published."""
    if table.empty:
        return table
    sizes = table["n"].to_numpy(dtype=float).astype(int)
    events = np.rint(table["observed"].to_numpy(dtype=float) * sizes).astype(int)
    if min(events.sum(), sizes.sum() - events.sum()) < min_cell_size:
        return table.iloc[0:0].copy()
    rows = []
    for b, members in enumerate(_pool(events, sizes, min_cell_size)):
        n, k = int(sizes[members].sum()), int(events[members].sum())
        mean_predicted = float(np.dot(table["mean_predicted"].to_numpy(dtype=float)[members], sizes[members]) / n)
        row = {"bin": b, "n": n, "mean_predicted": mean_predicted, "observed": k / n}
        row["lower"], row["upper"] = _wilson(k, n, confidence)
        rows.append(row)
    extra = [c for c in table.columns if c not in rows[0]]
    out = pd.DataFrame(rows)
    for c in extra:  # constant labelling columns (e.g. model) carry over
        values = table[c].unique()
        if len(values) == 1:
            out[c] = values[0]
    return out


def calibration_table(y, risk, *, n_bins: int = 10, confidence: float = 0.95,
                      min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Observed event rate against mean predicted risk in quantile bins of predicted risk,
    each holding at least ``min_cell_size`` events and non-events, with Wilson intervals.

    Columns: ``bin, n, mean_predicted, observed, lower, upper``. Empty when the patients
    hold fewer events or non-events than ``min_cell_size``."""
    y = np.asarray(y, dtype=float)
    risk = np.asarray(risk, dtype=float)
    keep = ~np.isnan(y) & ~np.isnan(risk)
    y, risk = y[keep], risk[keep]
    columns = ["bin", "n", "mean_predicted", "observed", "lower", "upper"]
    if y.size == 0:
        return pd.DataFrame(columns=columns)
    order = np.argsort(risk, kind="stable")
    y, risk = y[order], risk[order]
    n_bins = max(1, min(n_bins, y.size))
    bounds = np.unique(np.quantile(risk, np.linspace(0, 1, n_bins + 1))[1:-1])
    idx = np.searchsorted(bounds, risk, side="right")
    bins = np.unique(idx)
    first = pd.DataFrame({
        "bin": np.arange(bins.size),
        "n": [int((idx == b).sum()) for b in bins],
        "mean_predicted": [float(risk[idx == b].mean()) for b in bins],
        "observed": [float(y[idx == b].mean()) for b in bins],
    })
    pooled = pool_calibration_table(first, min_cell_size=min_cell_size, confidence=confidence)
    return pooled[columns] if not pooled.empty else pd.DataFrame(columns=columns)


def _is_calibration(frame: pd.DataFrame) -> bool:
    return _CALIBRATION_COLUMNS <= set(map(str, frame.columns))


def _count_key(key: str) -> bool:
    return key in _COUNT_KEYS or key.startswith("n_") or key.endswith("_events")


def _small(value: Any, min_cell_size: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and 0 < int(value) < min_cell_size)


def _frame(frame: pd.DataFrame, min_cell_size: int) -> pd.DataFrame:
    if _is_calibration(frame):
        parts = [pool_calibration_table(part.drop(columns="model") if "model" in part else part,
                                        min_cell_size=min_cell_size).assign(**({"model": name} if "model" in part else {}))
                 for name, part in (frame.groupby("model", sort=False) if "model" in frame else [(None, frame)])]
        parts = [p for p in parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if parts else frame.iloc[0:0]
    out = frame.copy()
    label = suppressed_label(min_cell_size)
    for column in out.columns:
        values = out[column]
        if _count_key(str(column)):
            if any(_small(v, min_cell_size) for v in values):
                out[column] = pd.Series([label if _small(v, min_cell_size) else v for v in values],
                                        index=out.index, dtype=object)
        elif values.dtype == object:
            out[column] = [redact_text(v, min_cell_size=min_cell_size) if isinstance(v, str) else publishable(v, min_cell_size=min_cell_size)
                           if isinstance(v, (dict, list)) else v for v in values]
    return out


def publishable(value: Any, *, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> Any:
    """``value`` as it may appear in an evidence record.

    - a count (key ``n``, ``n_*``, ``events``, ``non_events``, ``*_events``, ``count``)
      of 1 to ``min_cell_size - 1`` becomes ``"<11"``;
    - a sentence loses small counts of events and "no events" (:func:`redact_text`);
    - a calibration table (``n, mean_predicted, observed``) has its bins pooled until
      each holds ``min_cell_size`` events and non-events.

    Domain tables suppress their own rates first (e.g. the fairness audit hides a rate
    whose numerator or complement is small, jointly with the cells that would reveal it);
    this pass is the guard that nothing a count can be recovered from slips through.
    """
    k = int(min_cell_size)
    if isinstance(value, pd.DataFrame):
        return _frame(value, k)
    if isinstance(value, pd.Series):
        return value.map(lambda v: redact_text(v, min_cell_size=k) if isinstance(v, str) else v)
    if isinstance(value, str):
        return redact_text(value, min_cell_size=k)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            v = getattr(value, f.name)
            new = suppressed_label(k) if _count_key(f.name) and _small(v, k) else publishable(v, min_cell_size=k)
            if new is not v:
                changes[f.name] = new
        if not changes:
            return value
        try:
            return dataclasses.replace(value, **changes)
        except (TypeError, ValueError):
            from clinval.evidence import to_jsonable

            return publishable(to_jsonable(value), min_cell_size=k)
    if isinstance(value, Mapping):
        return {key: (suppressed_label(k) if _count_key(str(key)) and _small(v, k) else publishable(v, min_cell_size=k))
                for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(publishable(v, min_cell_size=k) for v in value) if isinstance(value, list) else \
            tuple(publishable(v, min_cell_size=k) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return value
    return value
