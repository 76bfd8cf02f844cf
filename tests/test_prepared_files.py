"""The prepared study and the prediction log on disk: what each file holds, a faithful
round trip, and reference files whose bytes a new production period leaves alone (so DVC
re-runs neither train nor profile)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from studies import MONICA_RECIPE, MONICA_STUDY

from clinval import data, model


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _run(root, out, *, last: int | None = None, first: int | None = None):
    """prepare, train, score a MONICA study whose production ends at ``last`` (or starts at ``first``)."""
    params = copy.deepcopy(MONICA_STUDY)
    if last is not None:
        params["periods"]["production"]["to"] = last
    if first is not None:
        params["periods"]["production"]["from"] = first
    prepared = data.prepare(data.study_from_params(params), root=root)
    data.write_prepared(prepared, out / "prepared")
    pipeline, card = model.fit_locked_model(data.load_reference(out / "prepared"), model.recipe_from_params(MONICA_RECIPE))
    data.write_prediction_log(model.prediction_log(prepared, pipeline, card), out / "scored")
    return prepared, pipeline, card


@pytest.fixture(scope="module")
def spans(monica_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("spans")
    return {name: (base / name, _run(monica_root, base / name, **kw))
            for name, kw in {"all": {}, "shorter": {"last": 1991}, "later start": {"first": 1990}}.items()}


@pytest.mark.parametrize("other", ["shorter", "later start"])
def test_the_reference_files_do_not_depend_on_the_production_periods(spans, other):
    (full, _), (changed, _) = spans["all"], spans[other]
    for folder, kept in (("prepared", {"reference.parquet", "reference.json"}), ("scored", {"holdout.parquet"})):
        a, b = _files(full / folder), _files(changed / folder)
        assert {n for n in a if a[n] == b.get(n)} == kept, folder  # and the production files do differ


def test_the_whole_study_reads_back_as_it_was_prepared(spans):
    folder, (prepared, _, _) = spans["all"]
    again = data.load_prepared(folder / "prepared")
    pd.testing.assert_frame_equal(again.reference, prepared.reference, check_exact=True)
    pd.testing.assert_frame_equal(again.production, prepared.production, check_exact=True)
    assert again.schema == prepared.schema and again.periods == prepared.periods
    assert {k: v for k, v in again.metadata.items() if k != "reference_sha256"} == \
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in prepared.metadata.items()}
    reference = data.load_reference(folder / "prepared")
    assert reference.periods == () and reference.production.empty and reference.schema == prepared.schema
    assert "n_production" not in reference.metadata and "source" not in reference.metadata


def test_the_prediction_log_reads_back_hold_out_first(spans):
    folder, (prepared, pipeline, card) = spans["all"]
    written = model.prediction_log(prepared, pipeline, card)
    again = data.load_prediction_log(folder / "scored")
    pd.testing.assert_frame_equal(again, written, check_exact=True)
    holdout = data.load_holdout(folder / "scored" / "holdout.parquet")
    assert (holdout["period"] == "reference").all() and len(holdout) == card.n_holdout
    assert list(again["period"].iloc[: len(holdout)]) == ["reference"] * len(holdout)


def test_a_log_with_unknown_periods_is_written_without_error(tmp_path):
    log = pd.DataFrame({"period": pd.array(["reference", None, "1990"], dtype="string"), "predicted_risk": [0.1, 0.2, 0.3]})
    data.write_prediction_log(log, tmp_path / "scored")
    assert list(data.load_holdout(tmp_path / "scored")["predicted_risk"]) == [0.1]
    assert len(data.load_prediction_log(tmp_path / "scored")) == 3


def test_the_data_dictionary_of_the_reference_alone_names_its_years(spans):
    folder, _ = spans["all"]
    table = data.data_dictionary(data.load_reference(folder / "prepared")).set_index("column")
    assert table.loc["yronset", "values"] == "reference 1985 to 1987"
    whole = data.data_dictionary(data.load_prepared(folder / "prepared")).set_index("column")
    assert whole.loc["yronset", "values"] == "reference 1985 to 1987, then 1988, 1989, 1990, 1991, 1992, 1993"
