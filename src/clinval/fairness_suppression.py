"""Joint small-cell suppression of the fairness audit's group tables.

Every table published together (each attribute, and their intersection with its
margins) is suppressed jointly (:func:`clinval.privacy.suppression_mask` line by line,
then a null-space check), so no hidden count follows from the others. The same is done
for the patients behind each rate (events, non-events, true and false positives and
negatives, patients selected), zero included, so that no rate shown beside its ``n``
reveals a count below ``min_cell_size`` (``_OUTCOME_CELLS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd

from clinval.fairness_groups import INTERSECTION_SEPARATOR, OVERALL_GROUP, _components, _order
from clinval.privacy import DEFAULT_MIN_CELL_SIZE, determined_cells, suppressed_label, suppression_mask


SUPPRESSED_STATUS = "suppressed: fewer than {k} patients here or in a cell that would reveal such a group"
"""Status of every metric of a suppressed group (``{k}`` = min_cell_size)."""


@dataclass(frozen=True)
class _Cells:
    """Every published count of one family (components and their intersection)."""

    counts: pd.Series  # indexed for suppression_mask: level L<j> = the family-j line of each cell
    lines: list[list[str]]
    where: list[tuple[str, str] | None]  # cell -> (column, group); None = the period total
    constraints: np.ndarray  # published sums as linear equations (rows) over cells (columns)


def _published_cells(groups: pd.DataFrame, weights: np.ndarray | None = None) -> _Cells:
    """The cells of one family for :func:`suppression_mask`, with its published sums.

    Cells are the intersection's non-empty interior cells, each component's marginal
    counts and the period total. Published sums: for component ``j`` and value ``v``,
    the interior cells with that value add up to the marginal cell (a *slice*); each
    component's marginal cells add up to the total. For one column alone, its cells add
    up to the total. Index level ``L<j>`` names each cell's line in family ``j`` (slices
    of component ``j``, and the sum of component ``j - 1``'s marginals), so the lead's
    complementary suppression sees every published sum.

    With ``weights`` (0/1 per patient, e.g. "died"), each cell counts the weighted
    patients of the groups that hold patients: the events of every published group.
    """
    w = np.ones(len(groups)) if weights is None else np.asarray(weights, dtype=float)
    names = list(groups.columns)
    k = len(names)
    levels = [_order(groups[c]) for c in names]
    keys: list[tuple[str, ...]] = []
    counts: list[int] = []
    where: list[tuple[str, str] | None] = []
    members: dict[str, list[tuple[int, float]]] = {}

    def add(key: list[str], n: int, who: tuple[str, str] | None, signs: dict[str, float]) -> None:
        for line, sign in signs.items():
            members.setdefault(line, []).append((len(keys), sign))
        keys.append(tuple(key))
        counts.append(n)
        where.append(who)

    if k > 1:
        interior = groups.astype(str).assign(_w=w).groupby(names, sort=False)["_w"].sum().to_dict()
        name = INTERSECTION_SEPARATOR.join(names)
        for combo in product(*levels):
            if combo not in interior:
                continue  # an absent combination is a known zero: it hides nothing
            n = int(interior[combo])
            lines = [f"slice|{j}|{v}" for j, v in enumerate(combo)]
            add(lines, n, (name, INTERSECTION_SEPARATOR.join(combo)), {ln: 1.0 for ln in lines})
    for j, name in enumerate(names):
        marginal = pd.Series(w, index=groups.index).groupby(groups[name].astype(str).to_numpy()).sum()
        for value in levels[j]:
            key = [f"solo|{j}|{value}"] * k
            signs = {f"sum|{j}": 1.0}
            if k > 1:
                key[j] = f"slice|{j}|{value}"
                signs[key[j]] = -1.0
            key[(j + 1) % k] = f"sum|{j}"
            add(key, int(marginal.get(value, 0)), (name, value), signs)
    add([f"sum|{(i - 1) % k}" for i in range(k)], int(w.sum()), None, {f"sum|{j}": -1.0 for j in range(k)})

    level_names = [f"L{i}" for i in range(k)]
    series = pd.Series(counts, index=pd.MultiIndex.from_tuples(keys, names=level_names), dtype=float)
    constraints = np.zeros((len(members), len(keys)))
    for row, cells in enumerate(members.values()):
        for pos, sign in cells:
            constraints[row, pos] = sign
    return _Cells(counts=series, lines=[[lv] for lv in level_names], where=where, constraints=constraints)


def _family_mask(groups: pd.DataFrame, min_cell_size: int,
                 weights: np.ndarray | None = None) -> dict[tuple[str, str], bool]:
    """Hidden (True) per (column, group) for one family in one period.

    :func:`clinval.privacy.suppression_mask` hides small cells and their complements
    line by line; a hidden cell can still be fixed by a combination of lines (e.g. two
    hidden blocks joined by one hidden cell), so while any hidden count is determined,
    the smallest visible cell on one of its lines is hidden too and the mask recomputed.

    With ``weights`` the cells count weighted patients (events, patients flagged, ...) and
    a zero is as telling as a small count ("nobody in this group died"): it is hidden too.
    """
    cells = _published_cells(groups, weights)
    total = len(cells.where) - 1
    values = cells.counts.to_numpy()
    if values[total] < min_cell_size:
        return {w: True for w in cells.where if w is not None}
    forced: set[int] = set(np.flatnonzero(values == 0)) if weights is not None else set()
    while True:
        probe = cells.counts.copy()
        for f in forced:
            probe.iloc[f] = 1.0  # a forced cell counts as small, so it is hidden
        mask = suppression_mask(probe, min_cell_size=min_cell_size, lines=cells.lines).to_numpy().copy()
        mask[total] = False  # the period total is published elsewhere
        determined = determined_cells(cells.constraints, mask)
        if not determined.any():
            break
        victim = int(np.flatnonzero(determined)[0])
        on_its_lines = (np.abs(cells.constraints[np.abs(cells.constraints[:, victim]) > 0]) > 0).any(axis=0)
        candidates = [np.flatnonzero(on_its_lines & ~mask & (values > 0)), np.flatnonzero(~mask & (values > 0))]
        pool = next((c[c != total] for c in candidates if (c != total).any()), np.array([], dtype=int))
        if pool.size == 0:
            break  # nothing left to hide but the total
        forced.add(int(pool[np.argmin(values[pool])]))
    return {w: bool(mask[pos]) for pos, w in enumerate(cells.where) if w is not None}


def _families(columns: Sequence[str]) -> list[list[str]]:
    """Columns published together: each intersection with its components; the rest alone."""
    columns = list(columns)
    families, used = [], set()
    for c in columns:
        if INTERSECTION_SEPARATOR in c and all(p in columns for p in _components(c)):
            families.append([*_components(c), c])
            used.update([*_components(c), c])
    families += [[c] for c in columns if c not in used]
    return families


def _suppression(groups: pd.DataFrame, min_cell_size: int,
                 weights: np.ndarray | None = None) -> dict[tuple[str, str], bool]:
    """Hidden (True) per (column, group) for all group columns of one period, plus
    ``("", "all patients")`` for the period total. With ``weights`` (0/1 per patient) the
    counts are of the weighted patients (e.g. events) and zeros are hidden too."""
    total = len(groups) if weights is None else float(np.sum(weights))
    hidden: dict[tuple[str, str], bool] = {("", OVERALL_GROUP): total < min_cell_size}
    for family in _families(groups.columns):
        if len(family) > 1:
            hidden.update(_family_mask(groups[family[:-1]], min_cell_size, weights))
        elif INTERSECTION_SEPARATOR in family[0]:
            # an intersection without its component columns: rebuild them from the labels,
            # so its margins (published or derivable) are protected all the same
            column = family[0]
            parts = _components(column)
            split = groups[column].astype(str).str.split(INTERSECTION_SEPARATOR, regex=False, expand=True)
            frame = pd.DataFrame({p: split[i] for i, p in enumerate(parts)}, index=groups.index)
            hidden.update({key: h for key, h in _family_mask(frame, min_cell_size, weights).items() if key[0] == column})
        else:
            hidden.update(_family_mask(groups[family], min_cell_size, weights))
    return hidden


_OUTCOME_CELLS = {
    # which patients each metric's published value counts, as (cell, cell): a rate and its complement
    "prevalence": ("events", "non_events"),
    "auroc": ("events", "non_events"),
    "observed_expected": ("events", "non_events"),
    "calibration_slope": ("events", "non_events"),
    "sensitivity": ("true_positives", "false_negatives"),
    "false_positive_rate": ("false_positives", "true_negatives"),
    "ppv": ("true_positives", "false_positives"),
    "selection_rate": ("selected", "not_selected"),
}
"""A metric of a group is published only when every cell it is computed from holds at
least ``min_cell_size`` patients (prevalence 0.09 of 23 patients is 2 deaths)."""


def _outcome_suppression(groups: pd.DataFrame, y: np.ndarray, decision: np.ndarray,
                         min_cell_size: int) -> dict[str, dict[tuple[str, str], bool]]:
    """Hidden (True) per cell kind and (column, group), jointly over every table published
    together, so that no hidden count of events (or patients flagged, ...) follows from the
    period's totals or the other groups' rates."""
    events, non_events = y == 1, y == 0  # NaN (label not yet known) is neither
    cells = {"events": events, "non_events": non_events, "true_positives": events & decision,
             "false_negatives": events & ~decision, "false_positives": non_events & decision,
             "true_negatives": non_events & ~decision, "selected": decision, "not_selected": ~decision}
    return {kind: _suppression(groups, min_cell_size, mask.astype(float)) for kind, mask in cells.items()}


def group_counts(groups: pd.DataFrame, *, min_cell_size: int = DEFAULT_MIN_CELL_SIZE) -> pd.DataFrame:
    """Patients per group of every group column, with small-cell suppression.

    Parameters
    ----------
    groups
        Group columns of one period (:func:`sensitive_frame` output). Columns are
        published together: an intersection is suppressed jointly with its components
        so that no hidden count can be recovered from the period total, a component's
        table or the intersection's margins.
    min_cell_size
        Smallest count shown.

    Returns
    -------
    pandas.DataFrame
        ``attribute, group, n, suppressed``; ``n`` is an int or ``"<11"``. The first row
        is the whole period (``group == "all patients"``).
    """
    hidden = _suppression(groups, min_cell_size)
    label = suppressed_label(min_cell_size)
    rows = [{"attribute": "", "group": OVERALL_GROUP, "n": label if hidden[("", OVERALL_GROUP)] else len(groups),
             "suppressed": hidden[("", OVERALL_GROUP)]}]
    for column in groups.columns:
        counts = groups[column].astype(str).value_counts()
        for g in _order(groups[column]):
            h = hidden[(column, g)]
            rows.append({"attribute": column, "group": g, "n": label if h else int(counts[g]), "suppressed": h})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "suppressed"])
