"""Small-cell suppression: a hidden count can be recovered neither directly nor by subtraction."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clinval.privacy import suppressed_label, suppressed_shares, suppression_mask


def test_small_cells_are_hidden_and_large_cells_shown():
    counts = pd.Series({"a": 50, "b": 12, "c": 3, "d": 0})
    hidden = suppression_mask(counts, min_cell_size=11)
    assert hidden["c"] and not hidden["d"]
    # with the total published, hiding c alone would reveal it: the smallest other cell goes too
    assert hidden["b"] and not hidden["a"]
    table = suppressed_shares(counts, min_cell_size=11).set_index("category")
    assert table.loc["c", "n"] == suppressed_label(11) == "<11" and table.loc["c", "share"] is None
    assert table.loc["a", "n"] == 50 and table.loc["d", "n"] == 0


def _recoverable_1d(values: np.ndarray, hidden: np.ndarray) -> bool:
    """A hidden count is recoverable when it is the only hidden cell of a published total."""
    return hidden.sum() == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=8))
def test_no_hidden_count_is_recoverable_from_the_total(values):
    counts = pd.Series(values, index=[f"g{i}" for i in range(len(values))])
    hidden = suppression_mask(counts, min_cell_size=11).to_numpy()
    small = (counts > 0) & (counts < 11)
    assert hidden[small.to_numpy()].all(), "every small cell is hidden"
    if hidden.any() and counts.sum() >= 11:  # a total below 11 is itself a small cell: callers hide it
        assert not _recoverable_1d(counts.to_numpy(), hidden)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=6, max_size=6), st.integers(2, 3))
def test_no_hidden_cell_of_a_cross_table_is_recoverable_from_its_margins(values, n_cols):
    values = values[: (len(values) // n_cols) * n_cols]
    n_rows = len(values) // n_cols
    index = pd.MultiIndex.from_tuples(list(itertools.product(range(n_rows), range(n_cols))), names=["sex", "age_band"])
    counts = pd.Series(values, index=index)
    hidden = suppression_mask(counts, min_cell_size=11, lines=[["sex"], ["age_band"]])
    grid = hidden.to_numpy().reshape(n_rows, n_cols)
    assert grid[((counts > 0) & (counts < 11)).to_numpy().reshape(n_rows, n_cols)].all()
    # row and column totals are published: no row or column may hold exactly one hidden cell
    assert (grid.sum(axis=1) != 1).all()
    assert (grid.sum(axis=0) != 1).all()


def test_a_cell_recoverable_only_by_combining_lines_is_protected():
    # found by the fairness audit: rows 0 and 2 minus columns 0 and 1 recovered cell (0, 3)
    grid = np.array([[20, 1, 48, 6], [25, 22, 5, 1], [2, 1, 19, 17], [43, 46, 13, 40]])
    index = pd.MultiIndex.from_tuples(list(itertools.product(range(4), range(4))), names=["sex", "age_band"])
    counts = pd.Series(grid.ravel(), index=index)
    hidden = suppression_mask(counts, min_cell_size=11, lines=[["sex"], ["age_band"]]).to_numpy()
    constraints = np.vstack([np.repeat(np.eye(4), 4, axis=1), np.tile(np.eye(4), 4)])
    from clinval.privacy import determined_cells

    assert not determined_cells(constraints, hidden).any()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=16, max_size=16))
def test_no_hidden_cell_of_a_4x4_table_is_determined_by_its_margins(values):
    from clinval.privacy import determined_cells

    index = pd.MultiIndex.from_tuples(list(itertools.product(range(4), range(4))), names=["r", "c"])
    counts = pd.Series(values, index=index)
    hidden = suppression_mask(counts, min_cell_size=11, lines=[["r"], ["c"]]).to_numpy()
    constraints = np.vstack([np.repeat(np.eye(4), 4, axis=1), np.tile(np.eye(4), 4)])
    if np.asarray(values).reshape(4, 4).sum(axis=1).min() >= 11 and np.asarray(values).reshape(4, 4).sum(axis=0).min() >= 11:
        assert not determined_cells(constraints, hidden).any()
