"""The embedded study: the WHO MONICA registry, hospitalised cohort, cut into periods."""

from __future__ import annotations

import numpy as np


def test_hospitalised_cohort_size(monica):
    # DAAG::monica has 6,367 patients of whom 4,442 were hospitalised (hosp == "y")
    assert len(monica.reference) + len(monica.production) == 4442


def test_periods_are_reference_1985_1987_then_one_per_year(monica):
    assert monica.periods == ("1988", "1989", "1990", "1991", "1992", "1993")
    assert set(monica.reference["yronset"]) == {1985.0, 1986.0, 1987.0}
    for period in monica.periods:
        assert set(monica.production_period(period)["yronset"]) == {float(period)}


def test_outcome_is_death_within_28_days(monica):
    # published: 28-day mortality in hospital falls from about 27% (1985) to 13.5% (1993)
    ref = monica.reference
    assert abs(ref.loc[ref["yronset"] == 1985, "label"].mean() - 0.271) < 0.001
    assert abs(monica.production_period("1993")["label"].mean() - 0.1345) < 0.001


def test_hosp_is_never_a_feature_and_nk_is_a_category(monica):
    assert "hosp" not in monica.schema.features
    assert "hosp" not in monica.reference.columns
    assert "nk" in set(monica.reference["premi"])
    assert monica.schema.features == ("age", "sex", "premi", "smstat", "diabetes", "highbp", "hichol", "angina", "stroke")


def test_record_ids_are_unique_source_identifiers(monica):
    ids = np.concatenate([monica.reference["record_id"], monica.production["record_id"]])
    assert len(set(ids)) == len(ids)


def test_the_data_dictionary_says_what_each_column_and_code_means(monica):
    from clinval import data

    table = data.data_dictionary(monica).set_index("column")
    assert table.loc["premi", "meaning"] == "previous myocardial infarction (y, n); nk = not known"
    assert table.loc["age", "meaning"] == "age at onset, years"  # numeric: no code to explain
