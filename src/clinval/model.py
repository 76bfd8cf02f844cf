"""Build, fit and score the locked model; describe it in a model card.

The locked model is a scikit-learn :class:`~sklearn.pipeline.Pipeline` (impute, scale
or one-hot encode, then a classifier) fitted on the *training* part of the reference
period only. The rest of the reference period is held out for the reference performance
estimate. The recipe (estimator, its settings, the hold-out fraction and the seed) comes
from ``params/model.yaml`` and is recorded in the card.

Scoring produces the *prediction log*: every reference hold-out and production record
with the risk the deployed model would have predicted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from clinval._io import atomic_directory
from clinval.data import (  # noqa: F401  (the prediction log's reader and writer, re-exported: they need no scikit-learn)
    PreparedStudy,
    Schema,
    load_holdout,
    load_prediction_log,
    write_prediction_log,
)
from clinval.errors import InputError

__all__ = [
    "ESTIMATORS",
    "ModelCard",
    "Recipe",
    "build_pipeline",
    "card_summary",
    "coefficient_table",
    "feature_frame",
    "load_prediction_log",
    "write_prediction_log",
    "load_holdout",
    "fit_locked_model",
    "load_model",
    "prediction_log",
    "recipe_from_params",
    "score",
    "split_reference",
    "write_model",
]

ESTIMATORS = ("logistic_regression",)
"""Model families a recipe may name; the family is a locked component of the PCCP."""

MODEL_FILE = "model.joblib"
CARD_FILE = "card.json"
_MISSING_CATEGORY = "missing"


@dataclass(frozen=True)
class Recipe:
    """How the locked model is built (``params/model.yaml``)."""

    estimator: str = "logistic_regression"
    C: float = 1.0
    max_iter: int = 1000
    holdout_fraction: float = 0.3
    seed: int = 20240101


@dataclass(frozen=True)
class ModelCard:
    """What a reviewer needs to know about a fitted model."""

    recipe: Recipe
    features: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    positive: str
    n_train: int
    n_holdout: int
    train_prevalence: float
    holdout_ids: tuple[str, ...]
    training_data_sha256: str
    coefficients: Mapping[str, float]
    intercept: float
    intended_use: str
    known_limits: tuple[str, ...]


def recipe_from_params(params: Mapping[str, Any]) -> Recipe:
    """Turn a parsed ``model.yaml`` into a :class:`Recipe`, rejecting unknown keys."""
    known = set(Recipe.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(f"params/model.yaml: unknown key(s) {unknown}; known keys are {sorted(known)}.")
    recipe = Recipe(**params)
    if recipe.estimator not in ESTIMATORS:
        raise InputError(f"params/model.yaml: estimator {recipe.estimator!r} is not one of {list(ESTIMATORS)}.")
    if not 0 < recipe.holdout_fraction < 1:
        raise InputError(f"params/model.yaml: holdout_fraction must lie in (0, 1), got {recipe.holdout_fraction}.")
    return recipe


def build_pipeline(schema: Schema, recipe: Recipe) -> Pipeline:
    """An unfitted pipeline: median-impute and standardise numeric features, one-hot
    encode categorical ones (missing values become their own category; categories never
    seen in training are ignored at scoring time)."""
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), list(schema.numeric)),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value=_MISSING_CATEGORY)),
                        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                list(schema.categorical),
            ),
        ],
        verbose_feature_names_out=False,
    )
    classifier = LogisticRegression(C=recipe.C, max_iter=recipe.max_iter, random_state=recipe.seed)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def feature_frame(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Feature columns in the dtypes scikit-learn handles (object with NaN for missing)."""
    out = frame[list(schema.features)].copy()
    for column in schema.categorical:
        out[column] = out[column].astype(object).where(out[column].notna(), np.nan)
    return out


def split_reference(reference: pd.DataFrame, recipe: Recipe) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the reference period into training and hold-out parts, stratified by label."""
    train, holdout = train_test_split(
        reference, test_size=recipe.holdout_fraction, random_state=recipe.seed, stratify=reference["label"].astype(int)
    )
    return train.sort_index(), holdout.sort_index()


def _frame_digest(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def fit_locked_model(prepared: PreparedStudy, recipe: Recipe) -> tuple[Pipeline, ModelCard]:
    """Fit the locked model on the training part of the reference period."""
    schema = prepared.schema
    train, holdout = split_reference(prepared.reference, recipe)
    pipeline = build_pipeline(schema, recipe)
    pipeline.fit(feature_frame(train, schema), train["label"].astype(int).to_numpy())
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    classifier = pipeline.named_steps["classifier"]
    card = ModelCard(
        recipe=recipe,
        features=schema.features,
        numeric=schema.numeric,
        categorical=schema.categorical,
        target=schema.target,
        positive=schema.positive,
        n_train=len(train),
        n_holdout=len(holdout),
        train_prevalence=float(train["label"].mean()),
        holdout_ids=tuple(holdout["record_id"].astype(str)),
        training_data_sha256=_frame_digest(train[["record_id", "label", *schema.features]]),
        coefficients={str(n): round(float(c), 10) for n, c in zip(names, classifier.coef_[0])},
        intercept=round(float(classifier.intercept_[0]), 10),
        intended_use=(
            f"Estimate the probability that {schema.target} = {schema.positive!r} for a patient in the "
            "study's cohort, to support (not replace) clinical judgement and to be monitored for drift."
        ),
        known_limits=(
            "Fitted on the reference period only; calibration is expected to drift as case mix and care change.",
            "Categories absent from training are ignored at scoring time; their rate is monitored as drift.",
            "Not validated outside the study's cohort filter or population.",
        ),
    )
    return pipeline, card


def score(pipeline: Pipeline, frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Predicted risk (probability of the positive outcome) for each row."""
    return pipeline.predict_proba(feature_frame(frame, schema))[:, 1]


def prediction_log(prepared: PreparedStudy, pipeline: Pipeline, card: ModelCard) -> pd.DataFrame:
    """Every reference hold-out and production record with its predicted risk.

    The reference hold-out rows keep ``period == "reference"``; they are what the
    deployed model's reference performance and prediction distribution are measured on.
    """
    holdout = prepared.reference[prepared.reference["record_id"].isin(card.holdout_ids)]
    # scored apart: a hold-out risk is never computed in a batch that holds production rows
    parts = [part.assign(predicted_risk=score(pipeline, part, prepared.schema) if len(part) else np.array([], dtype=float))
             for part in (holdout, prepared.production)]
    return pd.concat(parts, ignore_index=True)


def write_model(pipeline: Pipeline, card: ModelCard, out_dir: str | os.PathLike) -> Path:
    """Write ``model.joblib`` and ``card.json`` to ``out_dir`` atomically."""

    with atomic_directory(out_dir) as tmp:
        joblib.dump(pipeline, tmp / MODEL_FILE, compress=3)
        (tmp / CARD_FILE).write_text(json.dumps(asdict(card), indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


def load_model(model_dir: str | os.PathLike) -> tuple[Pipeline, ModelCard]:
    """Read a model directory written by :func:`write_model`."""
    model_dir = Path(model_dir)
    if not (model_dir / CARD_FILE).exists():
        raise FileNotFoundError(f"{model_dir}: no model here; run `dvc repro train` (or `make run`) first.")
    raw = json.loads((model_dir / CARD_FILE).read_text())
    raw["recipe"] = Recipe(**raw["recipe"])
    for key in ("features", "numeric", "categorical", "holdout_ids", "known_limits"):
        raw[key] = tuple(raw[key])
    return joblib.load(model_dir / MODEL_FILE), ModelCard(**raw)


def card_summary(card: ModelCard) -> dict[str, Any]:
    """The model card's reviewer-facing fields (intended use, data, recipe, limits)."""
    return {
        "intended use": card.intended_use,
        "model": f"{card.recipe.estimator} (C={card.recipe.C}), scikit-learn pipeline",
        "inputs": ", ".join(card.features),
        "outcome": f"{card.target} = {card.positive!r}",
        "training data": f"{card.n_train} reference-period patients (event rate {card.train_prevalence:.3f}); "
        f"{card.n_holdout} held out for evaluation (seed {card.recipe.seed})",
        "training data digest": card.training_data_sha256,
        "known limits": " ".join(card.known_limits),
    }


def coefficient_table(card: ModelCard) -> pd.DataFrame:
    """Model coefficients as odds ratios (per SD for numeric features)."""
    names = list(card.coefficients)
    coef = np.array([card.coefficients[n] for n in names])
    return pd.DataFrame({"term": names, "coefficient": coef, "odds_ratio": np.exp(coef)})
