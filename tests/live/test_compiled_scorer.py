"""The compiled scorer against scikit-learn's predict_proba, record by record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinval import model as model_lib
from clinval.revalidation import RecalibratedModel
from clinval.serve import ModelNotCompilable, compile_model

TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def study_frame(monica):
    return pd.concat([monica.reference, monica.production], ignore_index=True)


def test_equals_predict_proba_on_every_record_of_the_study(monica, locked_model, study_frame):
    pipeline, _ = locked_model
    expected = model_lib.score(pipeline, study_frame, monica.schema)
    scored = compile_model(pipeline).score_frame(study_frame)
    assert len(study_frame) == 4442
    np.testing.assert_allclose(scored.risk, expected, rtol=0, atol=TOLERANCE)
    assert scored.unseen_counts() == {}


def test_records_path_equals_the_frame_path(monica, locked_model, study_frame):
    pipeline, _ = locked_model
    scorer = compile_model(pipeline)
    rows = model_lib.feature_frame(study_frame, monica.schema)
    records = [
        {name: (None if pd.isna(value) else value) for name, value in row.items()}
        for row in rows.to_dict(orient="records")
    ]
    np.testing.assert_array_equal(scorer.score(records).risk, scorer.score_frame(study_frame).risk)


def test_missing_values_and_unseen_categories_score_as_the_pipeline_does(monica, locked_model, study_frame):
    pipeline, _ = locked_model
    rows = study_frame.iloc[:200].copy()
    rng = np.random.default_rng(7)
    rows.loc[rng.random(200) < 0.3, "age"] = np.nan
    rows["smstat"] = rows["smstat"].astype(object)
    rows.loc[rows.index[:40], "smstat"] = "vaper"           # never seen in training
    rows.loc[rows.index[40:60], "smstat"] = np.nan         # missing: the 'missing' category
    rows.loc[rows.index[60:70], "sex"] = "unknown"         # unseen in a second feature
    expected = model_lib.score(pipeline, rows, monica.schema)
    scored = compile_model(pipeline).score_frame(rows)
    np.testing.assert_allclose(scored.risk, expected, rtol=0, atol=TOLERANCE)
    assert scored.unseen_counts() == {"smstat": 40, "sex": 10}
    assert scored.unseen[0] == ("smstat",) and scored.unseen[65] == ("sex",) and scored.unseen[45] == ()


def test_a_recalibrated_model_compiles_to_the_same_risks(monica, locked_model, study_frame):
    pipeline, _ = locked_model
    recalibrated = RecalibratedModel(pipeline, intercept=-0.4, slope=0.83)
    features = model_lib.feature_frame(study_frame, monica.schema)
    expected = recalibrated.predict_proba(features)[:, 1]
    np.testing.assert_allclose(compile_model(recalibrated).score_frame(study_frame).risk, expected, rtol=0, atol=TOLERANCE)


def test_a_refitted_pipeline_compiles_too(monica, locked_model, study_frame):
    _, card = locked_model
    refit = model_lib.build_pipeline(monica.schema, card.recipe)
    rows = monica.production
    refit.fit(model_lib.feature_frame(rows, monica.schema), rows["label"].astype(int).to_numpy())
    np.testing.assert_allclose(
        compile_model(refit).score_frame(study_frame).risk,
        model_lib.score(refit, study_frame, monica.schema), rtol=0, atol=TOLERANCE,
    )


def test_a_model_of_another_family_is_refused_with_the_reason(monica, locked_model):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    pipeline, _ = locked_model
    other = Pipeline([("preprocess", pipeline.named_steps["preprocess"]), ("classifier", RandomForestClassifier())])
    with pytest.raises(ModelNotCompilable, match="not a binary LogisticRegression"):
        compile_model(other)
