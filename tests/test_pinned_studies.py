"""The MONICA params pinned under tests/fixtures stay those the repository ships.

Tests that need MONICA's plan or settings read the pinned copy, so they pass whichever
study params/ names. While params/ names MONICA, the copy must equal it byte for byte:
otherwise a change to params/ would go untested.
"""

from pathlib import Path

import pytest
import yaml

from studies import MONICA_PARAMS, MONICA_STUDY

PARAMS = Path(__file__).resolve().parents[1] / "params"


def test_the_pinned_copy_is_the_shipped_monica_params():
    if yaml.safe_load((PARAMS / "study.yaml").read_text())["name"] != MONICA_STUDY["name"]:
        pytest.skip("params/ names another study: the pinned MONICA copy is what the MONICA tests use")
    shipped = sorted(p.name for p in PARAMS.glob("*.yaml"))
    assert sorted(p.name for p in MONICA_PARAMS.glob("*.yaml")) == shipped
    for name in shipped:
        assert (MONICA_PARAMS / name).read_bytes() == (PARAMS / name).read_bytes(), (
            f"params/{name} changed: copy it to {MONICA_PARAMS.relative_to(PARAMS.parent)}/{name}")


def test_the_pinned_study_is_the_one_the_fixtures_use():
    pinned = yaml.safe_load((MONICA_PARAMS / "study.yaml").read_text())
    for key in ("name", "target", "features", "time", "periods", "cohort", "unknown_codes", "sensitive", "descriptions"):
        assert pinned[key] == MONICA_STUDY[key], key
