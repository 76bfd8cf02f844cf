"""``clinval drift compare``: ad-hoc comparison of two data files with the drift engine.

    clinval drift compare REFERENCE CURRENT [--study params/study.yaml]
                          [--params params/drift.yaml] [--exclude COLUMN ...]
                          [--format table|json|csv] [--out result.json]

REFERENCE and CURRENT are CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``)
files. Features come from ``features: {numeric: [...], categorical: [...]}`` in the
study YAML. Without ``--study`` they are the columns common to both files (numeric dtypes
as numeric, the rest as categorical) minus the columns that are not features, each named
with the reason: clinval's own columns (record id, period, label, predicted risk, the
prediction log's), identifiers (a different value on every row), dates and times, and
numeric columns whose values in the two files do not overlap at all (a time or period
column such as a year). Decision settings come from ``--params`` (the
:class:`clinval.drift.DriftSettings` keys, other keys ignored) or the defaults.

A feature is *drifted*, *not drifted* or *untestable* (too few values, a constant
reference: the engine says why); an untestable feature is never counted as not drifted.
``--format`` chooses what goes to stdout: a table (default), the JSON document or one CSV
row per feature; notes go to stderr. ``--out`` also writes the JSON document to a file.
Bad input gives a one-paragraph error, not a traceback.

pandas, scipy and rich are imported when the command runs (``clinval --help`` stays fast).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clinval.cli._common import UserError, format_option, friendly
from clinval.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from clinval.drift import DriftSettings

__all__ = ["drift", "features_from_study", "drift_settings", "json_value", "read_table"]

ERR_READ = "Could not read {role} file '{path}': {reason}."
ERR_FORMAT = "Cannot tell the format of {role} file '{path}': use .csv, .csv.gz, .parquet or .pq."
ERR_STUDY = "Could not use study file '{path}': {reason}."
ERR_PARAMS = "Could not use drift params file '{path}': {reason}."
ERR_COLUMN = (
    "Column '{column}' is listed in {source} but is missing from the {role} file '{path}'. "
    "Check the spelling, or remove it from the feature list."
)
ERR_NO_COMMON = "The files '{reference}' and '{current}' have no columns in common, so there is nothing to compare."
ERR_NO_FEATURES = (
    "No features left to compare in '{reference}' and '{current}': every common column was excluded ({excluded}). "
    "Pass --study with a features list to choose them yourself."
)
NOTE_INFERRED = (
    "No --study given: testing the {n} columns common to both files that look like features; numeric dtypes as "
    "numeric ({numeric}), the rest as categorical ({categorical}). Pass --study with a features list to choose them."
)
NOTE_IGNORED_KEYS = "Note: ignored keys in {path} that are not drift settings: {keys}."

VERDICT_DRIFTED = "drifted"
VERDICT_STABLE = "not drifted"
VERDICT_UNTESTABLE = "untestable"

WHY_OWN = "columns clinval adds (record id, period, label, predicted risk, prediction log)"
WHY_IDENTIFIER = "an identifier: a different value on every row"
WHY_DATE = "a date or time"
WHY_NO_OVERLAP = "no value in common: reference {ref}, current {cur}; a time or period column"
WHY_NOT_IN_STUDY = "not among the study's features"
WHY_EXCLUDED = "left out with --exclude"


def read_table(path: Path, role: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; any failure is a one-paragraph error naming the file."""
    import pandas as pd

    name = path.name.lower()
    if not path.exists():
        raise UserError(ERR_READ.format(role=role, path=path, reason="no such file"))
    try:
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - whatever the reader says, it is about this file
        raise UserError(ERR_READ.format(role=role, path=path, reason=str(error).splitlines()[0])) from error
    raise UserError(ERR_FORMAT.format(role=role, path=path))


def _load_yaml(path: Path, error: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(error.format(path=path, reason=str(exc).splitlines()[0])) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(error.format(path=path, reason="the top level is not a mapping"))
    return data


def features_from_study(path: Path) -> tuple[list[str], list[str]]:
    """``(numeric, categorical)`` from the ``features`` section of a study YAML."""
    study = _load_yaml(path, ERR_STUDY)
    features = study.get("features")
    if not isinstance(features, dict):
        raise UserError(
            ERR_STUDY.format(path=path, reason="it has no 'features: {numeric: [...], categorical: [...]}' section")
        )
    lists = []
    for kind in ("numeric", "categorical"):
        value = features.get(kind) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(ERR_STUDY.format(path=path, reason=f"features.{kind} must be a list of column names"))
        lists.append(value)
    if not lists[0] and not lists[1]:
        raise UserError(ERR_STUDY.format(path=path, reason="features.numeric and features.categorical are both empty"))
    return lists[0], lists[1]


def drift_settings(path: Path | None) -> DriftSettings:
    """The :class:`~clinval.drift.DriftSettings` in a params file (other keys ignored, with a note), or the defaults."""
    from clinval.drift import DriftSettings

    if path is None:
        return DriftSettings()
    data = _load_yaml(path, ERR_PARAMS)
    known = {k: v for k, v in data.items() if k in DriftSettings.keys()}
    ignored = sorted(set(data) - set(known))
    if ignored:
        click.echo(NOTE_IGNORED_KEYS.format(path=path, keys=", ".join(map(str, ignored))), err=True)
    try:
        return DriftSettings(**known)
    except InputError as exc:  # DriftSettings validates each value: the message names the key
        raise UserError(ERR_PARAMS.format(path=path, reason=str(exc))) from exc


def json_value(value: Any) -> Any:
    """A JSON-ready scalar: numpy scalars as Python ones, NaN and infinities as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return json_value(value.item())
    return value


# -- which columns are features -------------------------------------------------------
def _own_columns() -> set[str]:
    from clinval.data import RESERVED_COLUMNS
    from clinval.predlog import LOG_COLUMNS
    from clinval.stream import LogColumns

    scored = LogColumns()  # the prediction log's period, label and predicted-risk columns
    return {*RESERVED_COLUMNS, scored.period, scored.label, scored.risk, *LOG_COLUMNS}


def _is_identifier(values: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return False  # measurements can all differ; an identifier is a code or a whole number
    return len(values) > 1 and values.notna().all() and values.nunique() == len(values)


def _is_date(values: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return True
    if not (pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype)):
        return False
    present = values.dropna()
    if present.empty or not present.map(lambda v: isinstance(v, str) and ("-" in v or ":" in v)).all():
        return False
    return bool(pd.to_datetime(present, errors="coerce", format="ISO8601").notna().all())


def _range(values: pd.Series) -> str:
    low, high = values.min(), values.max()
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def _no_overlap(reference: pd.Series, current: pd.Series) -> str | None:
    """Why a numeric column looks like time: its two ranges are disjoint (None when they overlap)."""
    import pandas as pd

    numeric = (pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype) for s in (reference, current))
    if not all(numeric):
        return None
    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty or not (ref.max() < cur.min() or cur.max() < ref.min()):
        return None
    return WHY_NO_OVERLAP.format(ref=_range(ref), cur=_range(cur))


def non_features(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """The ``columns`` (common to both frames) that are not features, each with the reason."""
    own = _own_columns()
    excluded = {}
    for column in columns:
        ref, cur = reference[column], current[column]
        if column in own:
            excluded[column] = WHY_OWN
        elif _is_date(ref) or _is_date(cur):
            excluded[column] = WHY_DATE
        elif _is_identifier(ref) and _is_identifier(cur):
            excluded[column] = WHY_IDENTIFIER
        elif why := _no_overlap(ref, cur):
            excluded[column] = why
    return excluded


def _split_by_dtype(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    import pandas as pd

    numeric, categorical = [], []
    for column in columns:
        kinds = [frame[column].dtype for frame in (reference, current)]
        if all(pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in kinds):
            numeric.append(column)
        else:
            categorical.append(column)
    return numeric, categorical


# -- output ------------------------------------------------------------------------------
def _verdict(row: dict[str, Any], ok: str) -> str:
    if row["status"] != ok:
        return VERDICT_UNTESTABLE
    return VERDICT_DRIFTED if row["drifted"] else VERDICT_STABLE


def _result_rows(result: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-ready dict per feature: the engine's columns, ``drifted`` null when untestable, and the verdict."""
    from clinval.drift import RESULT_COLUMNS
    from clinval.vocabulary import STATUS_OK

    rows = []
    for record in result.to_dict(orient="records"):
        row = {column: json_value(record[column]) for column in RESULT_COLUMNS}
        row["verdict"] = _verdict(row, STATUS_OK)
        if row["verdict"] == VERDICT_UNTESTABLE:
            row["drifted"] = None  # not tested is not "not drifted"
        rows.append(row)
    return rows


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _reason(status: str) -> str:
    from clinval.drift import INSUFFICIENT

    return status.removeprefix(INSUFFICIENT)


def _print_table(payload: dict[str, Any]) -> None:
    """The decision per feature as a table that fits 80 columns (every number is in --format json or csv)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                  title=f"Drift of {payload['current']} against {payload['reference']}")
    table.add_column("feature", overflow="fold")
    for name in ("test", "n ref/cur", "p", "q (FDR)", "PSI (crit.)"):
        table.add_column(name, justify="right" if name != "test" else "left", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for row in payload["results"]:
        psi = "–" if row["psi"] is None else f"{row['psi']:.3f} ({_number(row['psi_critical'])})"
        verdict = f"[bold]{row['verdict']}[/bold]" if row["verdict"] == VERDICT_DRIFTED else row["verdict"]
        table.add_row(row["feature"], row["test"] or "–", f"{row['n_reference']:,}/{row['n_current']:,}",
                      _p(row["p_value"]), _p(row["q_value"]), psi, verdict)
    Console(highlight=False).print(table)
    summary = payload["summary"]
    tested = summary["n_tested"]
    click.echo(f"{summary['n_drifted']} of {tested} tested feature{'' if tested == 1 else 's'} drifted "
               f"(false discovery rate {payload['settings']['fdr_level']:g} across the features tested).")
    for row in payload["results"]:
        if row["verdict"] == VERDICT_UNTESTABLE:
            click.echo(f"Untestable: {row['feature']}: {_reason(row['status'])}.")
    by_reason: dict[str, list[str]] = {}
    for column, why in payload["excluded"].items():
        by_reason.setdefault(why, []).append(column)
    for why, columns in by_reason.items():
        click.echo(f"Not tested: {', '.join(columns)}: {why}.")


def _print_csv(payload: dict[str, Any]) -> None:
    import pandas as pd

    click.echo(pd.DataFrame(payload["results"]).to_csv(index=False), nl=False)


# -- the commands --------------------------------------------------------------------------
_DATA_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)
_YAML_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.group(name="drift")
def drift() -> None:
    """Drift statistics outside the pipeline."""


@drift.command(name="compare")
@click.argument("reference", type=_DATA_FILE)
@click.argument("current", type=_DATA_FILE)
@click.option("--study", "study_path", type=_YAML_FILE, default=None,
              help="Study YAML with features: {numeric: [...], categorical: [...]} (e.g. params/study.yaml); "
                   "without it, features are inferred and non-features left out.")
@click.option("--params", "params_path", type=_YAML_FILE, default=None,
              help="Drift settings YAML (DriftSettings keys, e.g. params/drift.yaml).")
@click.option("--exclude", "excluded_by_user", multiple=True, metavar="COLUMN", help="Do not test this column (repeatable).")
@format_option("table", "json", "csv")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the JSON document (every column of every feature) to this file.")
@friendly
def compare(reference: Path, current: Path, study_path: Path | None, params_path: Path | None,
            excluded_by_user: tuple[str, ...], output_format: str, out_path: Path | None) -> None:
    """Compare CURRENT with REFERENCE (CSV or Parquet), feature by feature.

    Each feature is drifted, not drifted (after false discovery rate control across the
    features tested) or untestable, with the reason. Without --study, columns that are not
    features (clinval's own, identifiers, dates, time or period columns) are left out and
    named.
    """
    from clinval._io import atomic_write_text
    from clinval.drift import DriftSettings, compare_period
    from clinval.profile import build_reference_profile

    settings = drift_settings(params_path)
    reference_frame = read_table(reference, "reference")
    current_frame = read_table(current, "current")
    common = [c for c in reference_frame.columns if c in set(current_frame.columns)]
    if study_path is not None:
        numeric, categorical = features_from_study(study_path)
        source = f"the study file '{study_path}'"
        for frame, role, path in ((reference_frame, "reference", reference), (current_frame, "current", current)):
            for column in [*numeric, *categorical]:
                if column not in frame.columns:
                    raise UserError(ERR_COLUMN.format(column=column, source=source, role=role, path=path))
        excluded = {c: WHY_NOT_IN_STUDY for c in common if c not in {*numeric, *categorical}}
    else:
        if not common:
            raise UserError(ERR_NO_COMMON.format(reference=reference, current=current))
        excluded = non_features(reference_frame, current_frame, common)
        numeric, categorical = _split_by_dtype(reference_frame, current_frame, [c for c in common if c not in excluded])
    for column in excluded_by_user:
        excluded.setdefault(column, WHY_EXCLUDED)
    numeric = [c for c in numeric if c not in excluded_by_user]
    categorical = [c for c in categorical if c not in excluded_by_user]
    if not numeric and not categorical:
        raise UserError(ERR_NO_FEATURES.format(reference=reference, current=current,
                                               excluded=", ".join(excluded) or "none"))
    if study_path is None:
        click.echo(NOTE_INFERRED.format(n=len(numeric) + len(categorical), numeric=", ".join(numeric) or "none",
                                        categorical=", ".join(categorical) or "none"), err=True)
    # bad data (a text column tested as numeric, infinite values) is an InputError naming the column
    profile = build_reference_profile(reference_frame, numeric=numeric, categorical=categorical, n_bins=settings.n_bins)
    result = compare_period(profile, current_frame, settings=settings)
    rows = _result_rows(result)
    payload = {
        "reference": str(reference), "current": str(current),
        "n_rows_reference": len(reference_frame), "n_rows_current": len(current_frame),
        "features_source": "study" if study_path is not None else "inferred from the files",
        "settings": {key: getattr(settings, key) for key in DriftSettings.keys()},
        "summary": {"n_features": len(rows), "n_tested": sum(r["verdict"] != VERDICT_UNTESTABLE for r in rows),
                    "n_drifted": sum(r["verdict"] == VERDICT_DRIFTED for r in rows),
                    "n_untestable": sum(r["verdict"] == VERDICT_UNTESTABLE for r in rows)},
        "excluded": excluded,
        "results": rows,
    }
    document = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    if output_format == "json":
        click.echo(document, nl=False)
    elif output_format == "csv":
        _print_csv(payload)
    else:
        _print_table(payload)
    if out_path is not None:
        atomic_write_text(out_path, document)
        click.echo(f"Wrote {out_path}", err=output_format != "table")
