"""Small-cell suppression for evidence records.

Evidence records show aggregates only, and no aggregate may rest on fewer than
``min_cell_size`` patients (default 11: the threshold used by CMS and many hospital
data-release policies). A cell of 1 to ``min_cell_size - 1`` is shown as ``"<11"``.

Suppressing one cell is not enough when totals are shown: a hidden count equals the
shown total minus its visible neighbours. :func:`suppression_mask` therefore applies
*complementary* suppression: in every line whose sum is published (the whole table, or
each row and each column of a cross-tabulation), a line with exactly one hidden cell also
hides its smallest visible non-zero cell, and more cells are hidden until no hidden count
is determined by any combination of published sums and visible cells (a null-space test,
:func:`determined_cells`). Zero counts are shown (an empty cell identifies nobody); a zero is hidden as the
complement only when a line has no visible non-zero cell left to hide.

A line whose *total* is below ``min_cell_size`` is itself a small cell: no choice of
hidden cells protects it, so callers must not publish that total.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_MIN_CELL_SIZE",
    "bin_index",
    "determined_cells",
    "pooled_bin_edges",
    "suppressed_label",
    "suppressed_shares",
    "suppression_mask",
]

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
    constraints = np.vstack([ids == line for ids in groupings for line in np.unique(ids)]).astype(float)
    while True:
        _complement_lines(values, hidden, groupings)
        # a hidden cell can still be fixed by a combination of lines (two hidden blocks
        # joined through a third): hide more until no hidden count is determined
        determined = determined_cells(constraints, hidden)
        if not determined.any():
            break
        victim = int(np.flatnonzero(determined)[0])
        on_its_lines = constraints[constraints[:, victim] > 0].any(axis=0)
        pool = np.flatnonzero(on_its_lines & ~hidden)
        if pool.size == 0:
            break  # only the line total could protect it; callers hide totals below min_cell_size
        nonzero = pool[values[pool] > 0]
        pool = nonzero if nonzero.size else pool
        hidden[pool[np.argmin(values[pool])]] = True
    return pd.Series(hidden, index=counts.index, name="suppressed")


def _complement_lines(values: np.ndarray, hidden: np.ndarray, groupings: list[np.ndarray]) -> None:
    """In place: no line keeps exactly one hidden cell."""
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
                hidden[candidates[np.argmin(values[candidates])]] = True
                changed = True


def determined_cells(constraints: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Which hidden cells the published sums and the visible cells fix exactly.

    ``constraints`` has one row per published sum (coefficients over all cells). A hidden
    cell is free iff some vector in the null space of the constraints restricted to the
    hidden cells moves it; otherwise its value follows from what is shown.
    """
    out = np.zeros(hidden.size, dtype=bool)
    cols = np.flatnonzero(hidden)
    if cols.size == 0 or constraints.shape[0] == 0:
        return out
    a = constraints[:, cols]
    _, s, vt = np.linalg.svd(a, full_matrices=True)
    rank = int(np.sum(s > 1e-9 * max(1.0, float(s.max(initial=0.0)))))
    null = vt[rank:]
    free = np.abs(null).max(axis=0) > 1e-9 if null.shape[0] else np.zeros(cols.size, dtype=bool)
    out[cols] = ~free
    return out


def _line_ids(index: pd.Index, lines: Sequence[Sequence[str]] | None) -> list[np.ndarray]:
    if lines is None:
        return [np.zeros(len(index), dtype=int)]
    out = []
    for levels in lines:
        keys = pd.MultiIndex.from_arrays([index.get_level_values(lv) for lv in levels]) if len(levels) > 1 else index.get_level_values(levels[0])
        out.append(pd.factorize(keys)[0])
    return out


def suppressed_shares(counts: pd.Series, *, min_cell_size: int) -> pd.DataFrame:
    """A one-way frequency table as published: ``category``, ``n`` (the count as an int,
    or ``"<11"`` when hidden, complementary suppression included) and ``share`` (``None``
    where hidden)."""
    hidden = suppression_mask(counts, min_cell_size=min_cell_size)
    total = counts.sum()
    return pd.DataFrame({
        "category": list(counts.index),
        "n": pd.Series([suppressed_label(min_cell_size) if h else int(c) for c, h in zip(counts, hidden)], dtype=object),
        "share": pd.Series([None if h else c / total for c, h in zip(counts, hidden)], dtype=object),
    })


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value for ``edges``: bins are ``[e_i, e_i+1)``, the last one closed."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(edges.size - 2, 0))


def pooled_bin_edges(values: np.ndarray, *, n_bins: int, min_cell_size: int) -> np.ndarray:
    """Quantile bin edges, merged until every bin holds at least ``min_cell_size`` values.

    Ties can put many more values in one quantile bin than in its neighbours, so equal
    quantiles alone do not guarantee the minimum: the smallest bin is merged with its
    smaller neighbour until none is small (a single bin when there are too few values).
    """
    x = np.sort(np.asarray(values, dtype=float))
    n_bins = max(1, min(n_bins, x.size // max(min_cell_size, 1)))
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1))) if x.size else np.array([0.0, 1.0])
    if edges.size < 2:
        edges = np.array([x[0], x[0]]) if x.size else np.array([0.0, 1.0])
    while edges.size > 2:
        counts = np.bincount(bin_index(x, edges), minlength=edges.size - 1)
        if counts.min() >= min_cell_size:
            break
        i = int(np.argmin(counts))
        last = counts.size - 1
        drop = i + 1 if i == 0 or (i < last and counts[i + 1] < counts[i - 1]) else i
        edges = np.delete(edges, drop)
    return edges
