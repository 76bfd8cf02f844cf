"""Patient groups for the fairness audit: banded numeric attributes, "unknown" for a
missing value, and the intersection of all sensitive attributes (``"sex × age_band"``).

``band(values, *, edges, labels=None)``, ``sensitive_frame(log, *, attributes, bands)``;
the names used everywhere a group is shown (``OVERALL_GROUP``, ``UNKNOWN``) and how a
group reads in a sentence (``describe``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product

import numpy as np
import pandas as pd

from clinval.errors import InputError


UNKNOWN = "unknown"
"""The group of patients whose sensitive attribute is missing."""
INTERSECTION_SEPARATOR = " × "
"""Joins attribute names and group labels of an intersection: ``"sex × age_band"``, ``"f × 55-64"``."""
OVERALL_GROUP = "all patients"
"""The ``group`` of the whole-period rows of a group table."""
_ERR_COLUMN = ("the prediction log has no column {column!r}; columns are {columns}. Add the group columns first: "
               "log.assign(**sensitive_frame(log, attributes=..., bands=...)).")


_ERR_ATTRIBUTE = "the prediction log has no column {column!r} for a sensitive attribute; columns are {columns}."
_ERR_EDGES = "band edges must be at least two strictly increasing numbers; got {edges}."
_ERR_LABELS = "band labels must number one fewer than the edges ({n}); got {labels}."
_ERR_NOT_NUMERIC = "cannot band {name!r}: values are not numeric (e.g. {example!r})."
_ERR_BANDS_KEY = "bands given for {keys}, which are not among the attributes {attributes}."
_ERR_NO_ATTRIBUTES = "no sensitive attributes given."


def _is_integral(x: float) -> bool:
    return float(x).is_integer()


def _default_band_labels(edges: Sequence[float]) -> list[str]:
    if all(_is_integral(e) for e in edges):
        return [f"{int(lo)}-{int(hi) - 1}" if int(hi) - 1 > int(lo) else f"{int(lo)}"
                for lo, hi in zip(edges[:-1], edges[1:])]
    return [f"{lo:g} to <{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def band(values, *, edges: Sequence[float], labels: Sequence[str] | None = None) -> pd.Series:
    """A numeric attribute as bands ``[edges[i], edges[i+1])``.

    Parameters
    ----------
    values
        Numbers (e.g. age in years); missing values become ``"unknown"``.
    edges
        Strictly increasing band edges, in the values' units. Values below the first
        edge form the band ``"<first"``, values at or above the last ``"last+"``, so no
        patient is dropped.
    labels
        One label per band; default ``"35-44"`` for integer edges, else ``"35.5 to <45"``.

    Returns
    -------
    pandas.Series
        Ordered categorical (bands in order, then ``"unknown"``), aligned with ``values``.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise InputError(_ERR_EDGES.format(edges=edges))
    if labels is None:
        labels = _default_band_labels(edges)
    labels = [str(x) for x in labels]
    if len(labels) != len(edges) - 1:
        raise InputError(_ERR_LABELS.format(n=len(edges) - 1, labels=labels))
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna() & series.notna()
    if bad.any():
        raise InputError(_ERR_NOT_NUMERIC.format(name=series.name, example=series[bad].iloc[0]))
    x = numeric.to_numpy(dtype=float, na_value=np.nan)
    fmt = (lambda e: f"{int(e)}") if all(_is_integral(e) for e in edges) else (lambda e: f"{e:g}")
    below, above = f"<{fmt(edges[0])}", f"{fmt(edges[-1])}+"
    idx = np.searchsorted(edges, x, side="right") - 1
    out = np.empty(x.size, dtype=object)
    inside = (idx >= 0) & (idx < len(labels))
    out[inside] = np.asarray(labels, dtype=object)[idx[inside]]
    out[(idx < 0) & ~np.isnan(x)] = below
    out[(idx >= len(labels)) & ~np.isnan(x)] = above
    out[np.isnan(x)] = UNKNOWN
    categories = [below, *labels, above, UNKNOWN]
    return pd.Series(pd.Categorical(out, categories=categories, ordered=True), index=series.index, name=series.name)


def _as_groups(values: pd.Series) -> pd.Series:
    """A categorical attribute as strings, missing -> "unknown", categories sorted, unknown last."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in values.cat.categories if str(c) != UNKNOWN]
    else:
        cats = sorted({str(v) for v in values.dropna().unique()} - {UNKNOWN})
    text = values.astype(object).where(values.notna(), UNKNOWN).map(str)
    return pd.Series(pd.Categorical(text, categories=[*cats, UNKNOWN], ordered=True), index=values.index, name=values.name)


def sensitive_frame(log: pd.DataFrame, *, attributes: Sequence[str], bands: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """The group columns of a prediction log.

    Parameters
    ----------
    log
        Prediction log with the raw sensitive attributes as columns.
    attributes
        Sensitive attribute columns, e.g. ``["sex", "age"]``.
    bands
        Band edges for numeric attributes, e.g. ``{"age": [35, 45, 55, 65, 70]}``
        (years); a banded attribute's column is named ``"<attribute>_band"``.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``log``: one ordered categorical column per attribute (missing ->
        ``"unknown"``) and, for two or more attributes, their intersection, named e.g.
        ``"sex × age_band"`` with groups such as ``"f × 55-64"``. Add them to the log
        with ``log.assign(**sensitive_frame(log, ...))`` (an unbanded attribute's
        column is replaced by its group column).
    """
    attributes = list(attributes)
    if not attributes:
        raise InputError(_ERR_NO_ATTRIBUTES)
    for column in attributes:
        if column not in log.columns:
            raise InputError(_ERR_ATTRIBUTE.format(column=column, columns=list(log.columns)))
    extra = sorted(set(bands) - set(attributes))
    if extra:
        raise InputError(_ERR_BANDS_KEY.format(keys=extra, attributes=attributes))
    out = pd.DataFrame(index=log.index)
    for column in attributes:
        if column in bands:
            banded = band(log[column], edges=bands[column])
            out[f"{column}_band"] = banded.rename(f"{column}_band")
        else:
            out[column] = _as_groups(log[column])
    names = list(out.columns)
    if len(names) >= 2:
        name = INTERSECTION_SEPARATOR.join(names)
        parts = [out[c].astype(str) for c in names]
        joined = parts[0]
        for p in parts[1:]:
            joined = joined + INTERSECTION_SEPARATOR + p
        cats = [INTERSECTION_SEPARATOR.join(combo) for combo in product(*[list(out[c].cat.categories) for c in names])]
        out[name] = pd.Categorical(joined, categories=cats, ordered=True)
    return out


def _order(values: pd.Series) -> list[str]:
    """Groups present in ``values``, in display order."""
    present = set(values.astype(str).unique())
    if isinstance(values.dtype, pd.CategoricalDtype):
        ordered = [str(c) for c in values.cat.categories if str(c) in present]
    else:
        ordered = sorted(present - {UNKNOWN}) + ([UNKNOWN] if UNKNOWN in present else [])
    return ordered


def _components(name: str) -> list[str]:
    return name.split(INTERSECTION_SEPARATOR)


def _is_unknown(group: str) -> bool:
    return UNKNOWN in _components(group)


def _group_column(values: pd.Series) -> pd.Series:
    return values if isinstance(values.dtype, pd.CategoricalDtype) else _as_groups(values)


def _describe(attribute: str, group: str) -> str:
    """How a group is named in a sentence: ``sex f``, ``age band 55-64``, ``sex m and age band 35-54``."""
    if INTERSECTION_SEPARATOR in attribute and group.count(INTERSECTION_SEPARATOR) == attribute.count(INTERSECTION_SEPARATOR):
        return " and ".join(f"{a.replace('_', ' ')} {g}" for a, g in
                            zip(attribute.split(INTERSECTION_SEPARATOR), group.split(INTERSECTION_SEPARATOR)))
    return f"{attribute.replace('_', ' ')} {group}"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
