"""``clinval drift stream``: per-period drift and performance of a prediction log too large for memory.

    clinval drift stream LOG.parquet --reference REF.parquet --study params/study.yaml
                         [--params params/drift.yaml] [--period-column period]
                         [--label-column label] [--risk-column predicted_risk]
                         [--reference-period reference] [--confidence 0.95]
                         [--min-cell-size 11] [--batch-rows 131072] [--out summary.json]

LOG is a Parquet file or a folder of Parquet files, read batch by batch
(:func:`clinval.stream.summarise_log`), so memory does not grow with its rows. REFERENCE
(CSV or Parquet, held in memory) is the reference period; features come from the study
YAML's ``features`` section and decision settings from ``--params`` as in
``clinval drift compare``. Predicted-risk drift compares each period with REFERENCE's risk
column when it has one, else with the log's own rows of ``--reference-period`` (the
pipeline's reference hold-out), else it is skipped. The command prints, per period, the
features that drifted after false-discovery-rate control and the performance with
confidence intervals (counts below ``--min-cell-size`` shown as ``<11``), and writes
every row, with its streaming error bound, to ``--out`` as JSON.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clinval.cli._common import LazyValue, UserError, friendly
from clinval.cli.drift import drift, drift_settings, features_from_study, json_value, read_table
from clinval.errors import InputError

if TYPE_CHECKING:  # imported when the command runs: numpy, pandas and scikit-learn are slow for every other command
    import numpy as np
    import pandas as pd

    from clinval import stream as streaming
    from clinval.drift import DriftSettings

__all__ = ["stream_command"]

ERR_REFERENCE_COLUMN = "Column '{column}' is listed in the study file '{study}' but is missing from the reference file '{path}'."
NOTE_NO_REFERENCE_RISK = "No reference risk ({reason}): prediction drift is skipped."
NOTE_REFERENCE_RISK = "Reference risk: {n:,} rows of {source}."
_PERFORMANCE_SHOWN = ("AUROC", "Brier", "O/E", "calibration intercept", "calibration slope")


def _reference_risk(reference: pd.DataFrame, reference_path: Path, log: Path, columns: streaming.LogColumns,
                    reference_period: str) -> tuple[np.ndarray | None, str]:
    """Reference predicted risks and a sentence saying where they came from."""
    import numpy as np

    from clinval import stream as streaming

    if columns.risk in reference.columns:
        try:
            values = streaming._risks(reference, columns.risk, None)  # the log's rule for risks
        except InputError as error:  # the column is not numbers, or not risks in [0, 1]
            raise UserError(f"{reference_path}: {error}") from None
        values = values[~np.isnan(values)]
        return values, NOTE_REFERENCE_RISK.format(n=values.size, source=f"'{reference_path}' column '{columns.risk}'")
    try:
        values = streaming.read_reference_risk(log, columns=columns, reference_period=reference_period)
    except streaming.StreamError as error:
        return None, NOTE_NO_REFERENCE_RISK.format(reason=str(error))
    return values, NOTE_REFERENCE_RISK.format(n=values.size, source=f"'{log}' with {columns.period} == {reference_period!r}")


def _count(value: int, min_cell_size: int) -> int | str:
    """A count, or ``<min_cell_size`` when it is small (nonzero and below the minimum)."""
    from clinval.privacy import suppressed_label

    return suppressed_label(min_cell_size) if 0 < value < min_cell_size else int(value)


def _estimate(row: pd.Series, digits: int = 3) -> str:
    if row["status"] != "ok":
        return "n/a"
    if math.isnan(row["lower"]):
        return f"{row['value']:.{digits}f}"
    return f"{row['value']:.{digits}f} ({row['lower']:.{digits}f} to {row['upper']:.{digits}f})"


def _performance_view(tables: streaming.StreamTables, summary: streaming.LogSummary, min_cell_size: int) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for period, part in tables.performance.groupby("period", sort=False):
        by_metric = part.set_index("metric")
        counts = summary.periods[period].performance
        entry = {"period": period, "labelled": _count(counts.n_labelled, min_cell_size),
                 "events": _count(counts.events, min_cell_size),
                 "mean risk": f"{by_metric.loc['mean predicted risk', 'value']:.3f}"}
        for metric in _PERFORMANCE_SHOWN:
            entry[metric] = _estimate(by_metric.loc[metric], 2 if metric in ("O/E", "calibration intercept", "calibration slope") else 3)
        rows.append(entry)
    return pd.DataFrame(rows)


def _records(frame: pd.DataFrame, min_cell_size: int) -> list[dict[str, Any]]:
    records = []
    for row in frame.drop(columns="period").to_dict(orient="records"):
        for key in ("n_reference", "n_current", "n"):
            if key in row:
                row[key] = _count(int(row[key]), min_cell_size)
        records.append({key: json_value(value) for key, value in row.items()})
    return records


def _payload(*, log: Path, reference: Path, study: Path, settings: DriftSettings, confidence: float, min_cell_size: int,
             summary: streaming.LogSummary, tables: streaming.StreamTables, profile: streaming.StreamProfile,
             read: dict[str, Any]) -> dict[str, Any]:
    from clinval.drift import DriftSettings

    periods = []
    for period, counts in summary.periods.items():
        predictions = tables.predictions[tables.predictions["period"] == period]
        periods.append({
            "period": period,
            "rows": _count(counts.inputs.summary.n_rows, min_cell_size),
            "features": _records(tables.features[tables.features["period"] == period], min_cell_size),
            "prediction": _records(predictions, min_cell_size)[0] if len(predictions) else None,
            "performance": _records(tables.performance[tables.performance["period"] == period], min_cell_size),
        })
    return {
        "log": str(log), "reference": str(reference), "study": str(study),
        "settings": {key: getattr(settings, key) for key in DriftSettings.keys()},
        "confidence": confidence, "min_cell_size": min_cell_size,
        "ecdf_grid_points": {name: int(grid.size) for name, grid in profile.grids.items()},
        "exact_ks": profile.exact_ks, "risk_resolution": profile.risk_resolution,
        "read": read, "periods": periods,
    }


@drift.command(name="stream")
@click.argument("log", type=click.Path(path_type=Path))  # no exists check: the reader names a missing log itself
@click.option("--reference", "reference_path", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The reference period (CSV or Parquet) the features are compared with.")
@click.option("--study", "study_path", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Study YAML with features: {numeric: [...], categorical: [...]}.")
@click.option("--params", "params_path", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Drift settings YAML (DriftSettings keys, e.g. params/drift.yaml).")
@click.option("--period-column", default="period", show_default=True, help="Column naming each row's period.")
@click.option("--label-column", default="label", show_default=True, help="Observed outcome (0/1, missing while unknown).")
@click.option("--risk-column", default="predicted_risk", show_default=True, help="Predicted probability of the outcome.")
@click.option("--reference-period", default="reference", show_default=True,
              help="Period of the log's reference rows, used for predicted-risk drift when REFERENCE has no risk column.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True,
              help="Two-sided level of every interval.")
@click.option("--min-cell-size", type=click.IntRange(min=1), default=LazyValue("clinval.privacy", "DEFAULT_MIN_CELL_SIZE"),
              show_default=True,
              help="Counts below this are shown as <N.")
@click.option("--batch-rows", type=click.IntRange(min=1), default=131_072, show_default=True,
              help="Rows counted at once (memory is one batch plus one Parquet row group).")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write every per-period row (with its streaming error bound) here as JSON.")
@friendly
def stream_command(log: Path, reference_path: Path, study_path: Path, params_path: Path | None, period_column: str,
                   label_column: str, risk_column: str, reference_period: str, confidence: float, min_cell_size: int,
                   batch_rows: int, out_path: Path | None) -> None:
    """Per-period drift and performance of LOG (Parquet), read in bounded memory."""
    import pandas as pd

    from clinval import stream as streaming
    from clinval._io import atomic_write_text
    from clinval.profile import build_reference_profile

    started = time.perf_counter()
    settings = drift_settings(params_path)
    numeric, categorical = features_from_study(study_path)
    reference = read_table(reference_path, "reference")
    for column in [*numeric, *categorical]:
        if column not in reference.columns:
            raise UserError(ERR_REFERENCE_COLUMN.format(column=column, study=study_path, path=reference_path))
    columns = streaming.LogColumns(period=period_column, label=label_column, risk=risk_column)
    features = build_reference_profile(reference, numeric=numeric, categorical=categorical, n_bins=settings.n_bins)
    risk, note = _reference_risk(reference, reference_path, log, columns, reference_period)
    click.echo(note, err=True)
    prediction = None
    if risk is not None:
        prediction = build_reference_profile(pd.DataFrame({risk_column: risk}), numeric=[risk_column], categorical=[],
                                             n_bins=settings.n_bins)
    del reference
    profile = streaming.build_stream_profile(features, prediction=prediction)
    total = streaming.count_log_rows(log)
    with click.progressbar(length=total, label=f"Reading {log.name}", file=sys.stderr,
                           show_pos=True) as bar:
        summary = streaming.summarise_log(log, profile, columns=columns, batch_rows=batch_rows, on_batch=bar.update)
    tables = streaming.stream_tables(profile, summary, settings=settings, confidence=confidence)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    drift_view = tables.drift_summary()
    drift_view["rows"] = [_count(n, min_cell_size) for n in drift_view["rows"]]
    click.echo(drift_view.to_string(index=False))
    click.echo(f"Input drift: FDR {settings.fdr_level:g} across the features of each period.")
    click.echo()
    click.echo(_performance_view(tables, summary, min_cell_size).to_string(index=False))
    click.echo(f"Intervals: {confidence:.0%}; AUROC DeLong on the risk grid, O/E delta method, calibration Wald.")
    read = {"rows": summary.n_rows, "rows_without_period": summary.n_without_period, "batches": summary.n_batches,
            "largest_batch": summary.largest_batch, "seconds": round(seconds, 3), "peak_rss_bytes": peak}
    batches = f"{summary.n_batches} batch{'' if summary.n_batches == 1 else 'es'}"
    click.echo(f"Read {summary.n_rows:,} rows in {batches} (at most {summary.largest_batch:,} rows each) "
               f"in {seconds:.1f} s ({summary.n_rows / max(seconds, 1e-9):,.0f} rows/s); peak RSS {peak / 2**20:,.0f} MB.")
    if summary.n_without_period:
        click.echo(f"{summary.n_without_period:,} rows have no {period_column} and were left out.")
    if out_path is not None:
        payload = _payload(log=log, reference=reference_path, study=study_path, settings=settings, confidence=confidence,
                           min_cell_size=min_cell_size, summary=summary, tables=tables, profile=profile, read=read)
        atomic_write_text(out_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
        click.echo(f"Wrote {out_path}")
