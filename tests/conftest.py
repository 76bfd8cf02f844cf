"""Shared fixtures: the embedded study, prepared once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def study_params() -> dict:
    return yaml.safe_load((ROOT / "params" / "study.yaml").read_text())


@pytest.fixture(scope="session")
def monica(study_params):
    """The prepared MONICA study (hospitalised cohort, periods cut)."""
    from clinval import data

    return data.prepare(data.study_from_params(study_params), root=ROOT)


@pytest.fixture(scope="session")
def locked_model(monica):
    from clinval import model

    recipe = model.recipe_from_params(yaml.safe_load((ROOT / "params" / "model.yaml").read_text()))
    return model.fit_locked_model(monica, recipe)
