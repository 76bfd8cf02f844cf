"""Fixtures for the live-loop tests: a repository root whose ledger records the locked model."""

from __future__ import annotations

import pandas as pd
import pytest
from live_helpers import make_live_root


@pytest.fixture(autouse=True)
def isolated_key_store(tmp_path_factory, monkeypatch):
    """No test touches the real key store or picks up a passphrase from the environment."""
    monkeypatch.setenv("CLINVAL_HOME", str(tmp_path_factory.mktemp("clinval_home")))
    monkeypatch.delenv("CLINVAL_PASSPHRASE", raising=False)
    monkeypatch.delenv("CLINVAL_USER", raising=False)


@pytest.fixture
def live_root(tmp_path, locked_model):
    pipeline, card = locked_model
    return make_live_root(tmp_path, pipeline=pipeline, card=card)


@pytest.fixture(scope="session")
def study_records(monica):
    """Every record of the study as a request record (features only, NA -> None)."""
    from clinval import model

    frame = model.feature_frame(pd.concat([monica.reference, monica.production], ignore_index=True), monica.schema)
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
