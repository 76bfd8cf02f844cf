"""Small prediction logs with known truth for the tests of :mod:`clinval.stream`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinval import stream
from clinval.profile import build_reference_profile

NUMERIC = ["age", "lab"]
CATEGORICAL = ["sex", "site"]


def population(n: int, rng: np.random.Generator, *, age_shift: float = 0.0, unseen: bool = False) -> pd.DataFrame:
    """Patients: integer ages (ties), a continuous lab value, two categories, risk and outcome."""
    age = np.round(rng.normal(62 + age_shift, 11, n)).clip(18, 99)
    age[rng.random(n) < 0.02] = np.nan
    lab = rng.lognormal(4.5, 0.35, n)
    lab[rng.random(n) < 0.05] = np.nan
    sex = rng.choice(np.array(["f", "m", "u"] if unseen else ["f", "m"], dtype=object), n,
                     p=[0.45, 0.45, 0.10] if unseen else [0.5, 0.5])
    sex[rng.random(n) < 0.03] = None
    site = rng.choice(np.array(["north", "south", "west"], dtype=object), n, p=[0.5, 0.3, 0.2])
    logit = -1.4 + 0.045 * (np.nan_to_num(age, nan=62.0) - 62) + 0.8 * np.log(np.nan_to_num(lab, nan=90.0) / 90.0)
    risk = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < risk).astype(float)
    return pd.DataFrame({"age": age, "lab": lab, "sex": sex, "site": site, "predicted_risk": risk, "label": label})


def reference_and_log(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference period and a log of three interleaved periods.

    ``same``: the reference's distribution; ``shifted``: age + 6 years and an unseen sex
    category; ``late``: the reference's distribution, 40% of labels not yet known, a few
    risks missing. Four rows have no period. Rows are shuffled, so every batch mixes periods.
    """
    rng = np.random.default_rng(seed)
    reference = population(2500, rng)
    parts = []
    for name, size, kwargs in (("same", 3000, {}), ("shifted", 2600, {"age_shift": 6.0, "unseen": True}), ("late", 2200, {})):
        part = population(size, rng, **kwargs).assign(period=name)
        if name == "late":
            part.loc[rng.random(size) < 0.4, "label"] = np.nan
            part.loc[rng.random(size) < 0.01, "predicted_risk"] = np.nan
        parts.append(part)
    log = pd.concat(parts, ignore_index=True)
    log.loc[rng.choice(len(log), 4, replace=False), "period"] = None
    log = log.iloc[rng.permutation(len(log))].reset_index(drop=True)
    return reference, log


def stream_profile(
    reference: pd.DataFrame, *, max_grid: int = 16384, n_bins: int = 10, risk_resolution: int = 1024
) -> stream.StreamProfile:
    features = build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL, n_bins=n_bins)
    prediction = build_reference_profile(reference[["predicted_risk"]], numeric=["predicted_risk"], categorical=[], n_bins=n_bins)
    return stream.build_stream_profile(features, prediction=prediction, max_grid=max_grid, risk_resolution=risk_resolution)


def period_rows(log: pd.DataFrame, period: str) -> pd.DataFrame:
    return log[log["period"] == period].reset_index(drop=True)
