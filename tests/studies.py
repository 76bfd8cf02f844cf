"""Studies the tests know by heart, independent of params/ (which a hospital edits)."""

from __future__ import annotations

MONICA_STUDY = {
    "name": "WHO MONICA myocardial infarction registry, Newcastle (AU) 1985-1993",
    "source": {"path": "raw/monica.csv", "embedded": {"package": "DAAG", "item": "monica"}},
    "id_column": "rownames",
    "cohort": {"hosp": ["y"]},
    "target": {"column": "outcome", "positive": "dead", "negative": ["live"]},
    "unknown_codes": ["nk"],
    "features": {"numeric": ["age"], "categorical": ["sex", "premi", "smstat", "diabetes", "highbp", "hichol", "angina", "stroke"]},
    "never_features": ["hosp"],
    "sensitive": ["sex", "age"],
    "time": {"column": "yronset", "offset": 1900},
    "periods": {"rule": "value", "reference": {"from": 1985, "to": 1987}, "production": {"from": 1988, "to": 1993}},
}
"""The MONICA study as the tests know it, independent of params/study.yaml."""

MONICA_RECIPE = {"estimator": "logistic_regression", "C": 1.0, "max_iter": 1000, "holdout_fraction": 0.3, "seed": 20240101}
