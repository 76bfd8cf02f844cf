"""``clinval drift compare``: ad-hoc comparison of two data files with the drift engine.

    clinval drift compare REFERENCE CURRENT [--study params/study.yaml]
                          [--params params/drift.yaml] [--out result.json]

REFERENCE and CURRENT are CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``)
files. Features come from ``features: {numeric: [...], categorical: [...]}`` in the
study YAML; without ``--study`` the columns common to both files are used, numeric
dtypes as numeric and everything else as categorical (the command says so). Decision
settings come from ``--params`` (the :class:`clinval.drift.DriftSettings` keys, other
keys ignored) or the defaults. The per-feature results go to ``--out`` as JSON and a
short table to the terminal. Bad input gives a one-paragraph error, not a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import pandas as pd
import yaml

from clinval.drift import RESULT_COLUMNS, DriftSettings, compare_period
from clinval.profile import build_reference_profile

__all__ = ["drift"]

ERR_READ = "Could not read {role} file '{path}': {reason}."
ERR_FORMAT = "Cannot tell the format of {role} file '{path}': use .csv, .csv.gz, .parquet or .pq."
ERR_STUDY = "Could not use study file '{path}': {reason}."
ERR_PARAMS = "Could not use drift params file '{path}': {reason}."
ERR_COLUMN = (
    "Column '{column}' is listed in {source} but is missing from the {role} file '{path}'. "
    "Check the spelling, or remove it from the feature list."
)
ERR_NO_COMMON = "The files '{reference}' and '{current}' have no columns in common, so there is nothing to compare."
ERR_ENGINE = "The comparison failed: {reason}."
NOTE_INFERRED = (
    "No --study given: using the {n} columns common to both files; numeric dtypes as numeric "
    "({numeric}), the rest as categorical ({categorical})."
)
NOTE_IGNORED_KEYS = "Note: ignored keys in {path} that are not drift settings: {keys}."



class DriftInputError(click.ClickException):
    """Bad input a user can fix: one paragraph, no traceback, exit status 2 like ``clinval``'s UserError."""

    exit_code = 2


_TABLE_COLUMNS = ["feature", "kind", "test", "statistic", "p_value", "q_value", "psi", "psi_critical", "drifted", "status"]


def _read_table(path: Path, role: str) -> pd.DataFrame:
    name = path.name.lower()
    if not path.exists():
        raise DriftInputError(ERR_READ.format(role=role, path=path, reason="no such file"))
    try:
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - reported as a friendly message
        raise DriftInputError(ERR_READ.format(role=role, path=path, reason=str(error).splitlines()[0])) from error
    raise DriftInputError(ERR_FORMAT.format(role=role, path=path))


def _load_yaml(path: Path, error: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DriftInputError(error.format(path=path, reason=str(exc).splitlines()[0])) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DriftInputError(error.format(path=path, reason="the top level is not a mapping"))
    return data


def _features_from_study(path: Path) -> tuple[list[str], list[str]]:
    study = _load_yaml(path, ERR_STUDY)
    features = study.get("features")
    if not isinstance(features, dict):
        raise DriftInputError(
            ERR_STUDY.format(path=path, reason="it has no 'features: {numeric: [...], categorical: [...]}' section")
        )
    lists = []
    for kind in ("numeric", "categorical"):
        value = features.get(kind) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DriftInputError(ERR_STUDY.format(path=path, reason=f"features.{kind} must be a list of column names"))
        lists.append(value)
    if not lists[0] and not lists[1]:
        raise DriftInputError(ERR_STUDY.format(path=path, reason="features.numeric and features.categorical are both empty"))
    return lists[0], lists[1]


def _infer_features(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[list[str], list[str]]:
    common = [c for c in reference.columns if c in set(current.columns)]
    numeric, categorical = [], []
    for column in common:
        dtype = reference[column].dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) and pd.api.types.is_numeric_dtype(current[column].dtype):
            numeric.append(column)
        else:
            categorical.append(column)
    return numeric, categorical


def _settings(path: Path | None) -> DriftSettings:
    if path is None:
        return DriftSettings()
    data = _load_yaml(path, ERR_PARAMS)
    known = {k: v for k, v in data.items() if k in DriftSettings.keys()}
    ignored = sorted(set(data) - set(known))
    if ignored:
        click.echo(NOTE_IGNORED_KEYS.format(path=path, keys=", ".join(map(str, ignored))), err=True)
    try:
        return DriftSettings(**known)
    except (TypeError, ValueError) as exc:
        raise DriftInputError(ERR_PARAMS.format(path=path, reason=str(exc))) from exc


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


def _format_table(result: pd.DataFrame) -> str:
    table = result[_TABLE_COLUMNS].copy()
    for column in ("statistic", "psi", "psi_critical"):
        table[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    for column in ("p_value", "q_value"):
        table[column] = table[column].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    table["status"] = table["status"].map(lambda s: s if len(s) <= 60 else s[:57] + "...")
    return table.to_string(index=False)


@click.group(name="drift")
def drift() -> None:
    """Drift statistics outside the pipeline."""


@drift.command(name="compare")
@click.argument("reference", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("current", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--study", "study_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Study YAML with features: {numeric: [...], categorical: [...]}.")
@click.option("--params", "params_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Drift settings YAML (DriftSettings keys, e.g. params/drift.yaml).")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the per-feature results here as JSON.")
def compare(reference: Path, current: Path, study_path: Path | None, params_path: Path | None, out_path: Path | None) -> None:
    """Compare CURRENT with REFERENCE (CSV or Parquet), feature by feature."""
    settings = _settings(params_path)
    reference_frame = _read_table(reference, "reference")
    current_frame = _read_table(current, "current")
    if study_path is not None:
        if not study_path.exists():
            raise DriftInputError(ERR_STUDY.format(path=study_path, reason="no such file"))
        numeric, categorical = _features_from_study(study_path)
        source = f"the study file '{study_path}'"
    else:
        numeric, categorical = _infer_features(reference_frame, current_frame)
        if not numeric and not categorical:
            raise DriftInputError(ERR_NO_COMMON.format(reference=reference, current=current))
        click.echo(NOTE_INFERRED.format(
            n=len(numeric) + len(categorical), numeric=", ".join(numeric) or "none",
            categorical=", ".join(categorical) or "none",
        ), err=True)
        source = "the inferred feature list"
    for frame, role, path in ((reference_frame, "reference", reference), (current_frame, "current", current)):
        for column in [*numeric, *categorical]:
            if column not in frame.columns:
                raise DriftInputError(ERR_COLUMN.format(column=column, source=source, role=role, path=path))
    try:
        profile = build_reference_profile(reference_frame, numeric=numeric, categorical=categorical, n_bins=settings.n_bins)
        result = compare_period(profile, current_frame, settings=settings)
    except (KeyError, TypeError, ValueError) as exc:
        reason = exc.args[0] if exc.args else str(exc)
        raise DriftInputError(ERR_ENGINE.format(reason=reason)) from exc
    click.echo(_format_table(result))
    n_drifted = int(result["drifted"].sum())
    click.echo(f"{n_drifted} of {len(result)} features drifted (FDR {settings.fdr_level:g}).")
    if out_path is not None:
        payload = {
            "reference": str(reference), "current": str(current),
            "n_rows_reference": len(reference_frame), "n_rows_current": len(current_frame),
            "features_source": "study" if study_path is not None else "inferred from dtypes",
            "settings": {key: getattr(settings, key) for key in DriftSettings.keys()},
            "results": [
                {column: _json_value(row[column]) for column in RESULT_COLUMNS}
                for row in result.to_dict(orient="records")
            ],
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        click.echo(f"Wrote {out_path}")
