"""Small-cell suppression for evidence records.

Evidence records show aggregates only, and no aggregate may rest on fewer than
``min_cell_size`` patients (default 11: the threshold used by CMS and many hospital
data-release policies). A cell of 1 to ``min_cell_size - 1`` is shown as ``"<11"``.

Suppressing one cell is not enough when totals are shown: a hidden count equals the
shown total minus its visible neighbours. :func:`suppression_mask` therefore applies
*complementary* suppression: in every line whose sum is published (the whole table, or
each row and each column of a cross-tabulation), a line with exactly one hidden cell also
hides its smallest visible non-zero cell, repeated until no line has a single hidden
cell. Zero counts are shown (an empty cell identifies nobody); a zero is hidden as the
complement only when a line has no visible non-zero cell left to hide.

A line whose *total* is below ``min_cell_size`` is itself a small cell: no choice of
hidden cells protects it, so callers must not publish that total.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_MIN_CELL_SIZE", "format_count", "suppressed_label", "suppression_mask"]

DEFAULT_MIN_CELL_SIZE = 11


def suppressed_label(min_cell_size: int) -> str:
    """How a suppressed count is shown, e.g. ``"<11"``."""
    return f"<{min_cell_size}"


def suppression_mask(counts: pd.Series, *, min_cell_size: int, lines: Sequence[Sequence[str]] | None = None) -> pd.Series:
    """Which counts must be hidden (``True``).

    Parameters
    ----------
    counts
        Non-negative counts; for a cross-tabulation, a Series with a MultiIndex.
    min_cell_size
        Smallest count that may be shown.
    lines
        Groups of index level names whose line sums are published. ``None`` means the
        whole Series is one line (its total is published). For a ``(sex, age_band)``
        table with published row and column totals use ``[["sex"], ["age_band"]]``.

    Returns
    -------
    pandas.Series of bool, aligned with ``counts``.
    """
    values = counts.to_numpy(dtype=float)
    if np.any(values < 0) or np.any(np.isnan(values)):
        raise ValueError("counts must be non-negative and not missing.")
    hidden = (values > 0) & (values < min_cell_size)
    groupings = _line_ids(counts.index, lines)
    changed = True
    while changed:
        changed = False
        for ids in groupings:
            for line in np.unique(ids):
                members = np.flatnonzero(ids == line)
                if hidden[members].sum() != 1:
                    continue
                candidates = members[~hidden[members] & (values[members] > 0)]
                if candidates.size == 0:
                    candidates = members[~hidden[members]]
                if candidates.size == 0:
                    continue
                smallest = candidates[np.argmin(values[candidates])]
                hidden[smallest] = True
                changed = True
    return pd.Series(hidden, index=counts.index, name="suppressed")


def _line_ids(index: pd.Index, lines: Sequence[Sequence[str]] | None) -> list[np.ndarray]:
    if lines is None:
        return [np.zeros(len(index), dtype=int)]
    out = []
    for levels in lines:
        keys = pd.MultiIndex.from_arrays([index.get_level_values(lv) for lv in levels]) if len(levels) > 1 else index.get_level_values(levels[0])
        out.append(pd.factorize(keys)[0])
    return out


def format_count(value: int, hidden: bool, *, min_cell_size: int) -> str:
    """A count as shown in a record: the number, or ``"<11"`` when hidden."""
    return suppressed_label(min_cell_size) if hidden else f"{int(value):,}"
