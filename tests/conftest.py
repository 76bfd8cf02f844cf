"""Shared fixtures: the MONICA study, pinned here (not read from params/), prepared once.

Tests must pass whichever study params/ names, so a test that needs MONICA's real data
describes MONICA itself and writes the embedded table into a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MONICA_STUDY = {
    "name": "WHO MONICA myocardial infarction registry, Newcastle (AU) 1985-1993",
    "source": {"path": "raw/monica.csv", "embedded": {"package": "DAAG", "item": "monica"}},
    "id_column": "rownames",
    "cohort": {"hosp": ["y"]},
    "target": {"column": "outcome", "positive": "dead"},
    "features": {"numeric": ["age"], "categorical": ["sex", "premi", "smstat", "diabetes", "highbp", "hichol", "angina", "stroke"]},
    "never_features": ["hosp"],
    "sensitive": ["sex", "age"],
    "time": {"column": "yronset", "offset": 1900},
    "periods": {"rule": "value", "reference": {"from": 1985, "to": 1987}, "production": {"from": 1988, "to": 1993}},
}
"""The MONICA study as the tests know it, independent of params/study.yaml."""

MONICA_RECIPE = {"estimator": "logistic_regression", "C": 1.0, "max_iter": 1000, "holdout_fraction": 0.3, "seed": 20240101}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def monica_root(tmp_path_factory) -> Path:
    """A folder holding MONICA's raw file at MONICA_STUDY's source path."""
    from clinval import data, sources

    root = tmp_path_factory.mktemp("monica")
    study = data.study_from_params(MONICA_STUDY)
    sources.write_embedded(study.embedded, study.source_path, root=root)
    return root


@pytest.fixture(scope="session")
def monica(monica_root):
    """The prepared MONICA study (hospitalised cohort, periods cut)."""
    from clinval import data

    return data.prepare(data.study_from_params(MONICA_STUDY), root=monica_root)


@pytest.fixture(scope="session")
def locked_model(monica):
    from clinval import model

    return model.fit_locked_model(monica, model.recipe_from_params(MONICA_RECIPE))
