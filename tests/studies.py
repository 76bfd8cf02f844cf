"""Studies the tests know by heart, independent of params/ (which a hospital edits)."""

from __future__ import annotations

MONICA_STUDY = {
    "name": "WHO MONICA myocardial infarction registry, Newcastle (AU) 1985-1993",
    "source": {"path": "raw/monica.csv", "embedded": {"package": "DAAG", "item": "monica"}},
    "id_column": "rownames",
    "cohort": {"hosp": ["y"]},
    "target": {"column": "outcome", "positive": "dead", "negative": ["live"]},
    "unknown_codes": ["nk"],
    "descriptions": {'outcome': 'vital status 28 days after onset (live, dead)', 'age': 'age at onset, years', 'sex': 'sex (m, f)', 'premi': 'previous myocardial infarction (y, n)', 'smstat': 'smoking status (c = current, x = ex-smoker, n = never)', 'diabetes': 'diabetes (y, n)', 'highbp': 'high blood pressure (y, n)', 'hichol': 'high cholesterol (y, n)', 'angina': 'angina (y, n)', 'stroke': 'previous stroke (y, n)', 'yronset': 'year of onset (85 = 1985)'},
    "features": {"numeric": ["age"], "categorical": ["sex", "premi", "smstat", "diabetes", "highbp", "hichol", "angina", "stroke"]},
    "never_features": ["hosp"],
    "sensitive": ["sex", "age"],
    "time": {"column": "yronset", "offset": 1900},
    "periods": {"rule": "value", "reference": {"from": 1985, "to": 1987}, "production": {"from": 1988, "to": 1993}},
}
"""The MONICA study as the tests know it, independent of params/study.yaml."""

MONICA_RECIPE = {"estimator": "logistic_regression", "C": 1.0, "max_iter": 1000, "holdout_fraction": 0.3, "seed": 20240101}


def write_registry_study(root, *, n_per_year: int = 900, seed: int = 7):
    """A synthetic readmission registry whose schema is unlike MONICA's, written as a
    folder of Parquet files (one per year) under ``root/data/raw/registry/``.

    Other names (``encounter_id``, ``readmit_30d``), an integer outcome (1/0), integer
    category codes (``sex_code`` 1/2, ``ward`` 1..12: more levels than a palette has
    colours, sorted as numbers), a date time column (``admitted_on``, periods by year),
    and built-in drift with known truth: creatinine missing in 15% of records until 2020,
    then 60%; a new ward 13 in 2022; the readmission rate falls after 2019.
    """
    from pathlib import Path

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder = Path(root) / "data" / "raw" / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    for year in range(2016, 2023):
        n = n_per_year
        age = rng.integers(18, 95, n)
        sex = rng.integers(1, 3, n)
        ward = rng.integers(1, 13 if year < 2022 else 14, n)
        admission = rng.choice(["elective", "emergency", "transfer"], n, p=[0.3, 0.6, 0.1])
        creatinine = rng.lognormal(4.4, 0.35, n)
        missing = rng.random(n) < (0.15 if year < 2021 else 0.60)
        logit = -2.2 + 0.025 * (age - 60) + 0.004 * (creatinine - 80) + 0.5 * (admission == "emergency") - (0.5 if year > 2019 else 0.0)
        readmit = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
        days = rng.integers(0, 365, n)
        frame = pd.DataFrame({
            "encounter_id": [f"E{year}{i:05d}" for i in range(n)],
            "readmit_30d": readmit,
            "age_years": age.astype("int64"),
            "sex_code": sex.astype("int64"),
            "ward": ward.astype("int64"),
            "admission_type": admission,
            "creatinine": np.where(missing, np.nan, np.round(creatinine, 1)),
            "admitted_on": pd.Timestamp(f"{year}-01-01") + pd.to_timedelta(days, unit="D"),
        })
        frame.to_parquet(folder / f"{year}.parquet", index=False)
    return folder


MONICA_PARAMS = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "monica" / "params"
"""The MONICA study's params/ as shipped, pinned for the tests that need MONICA's plan or settings."""


def monica_params(name: str) -> dict:
    """One pinned MONICA params file (``"pccp"``, ``"fairness"``, ...) as a dict."""
    import yaml

    return yaml.safe_load((MONICA_PARAMS / f"{name}.yaml").read_text())
