"""The model in force compiled to numpy arithmetic: a one-hot map and a dot product.

The locked model is a scikit-learn pipeline (median-impute and standardise numeric
features; constant-impute ``"missing"`` and one-hot encode categorical ones, ignoring
categories unseen in training; logistic regression). Scoring one record through it costs
milliseconds of pandas and validation overhead. :func:`compile_model` reads the fitted
parameters out of the pipeline once and :meth:`CompiledScorer.score` reproduces
``predict_proba`` with the same operations in the same order (scale, build the design
row, ``X @ coef + intercept``, ``expit``), so the two agree to rounding (a test checks
1e-12 on every record of the study).

A promoted recalibration (:class:`clinval.revalidation.RecalibratedModel`) compiles to
the locked pipeline followed by the same clip, logit and affine map it applies.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from clinval.errors import ClinvalError
from clinval.risk import recalibrated

__all__ = ["CompiledScorer", "ModelNotCompilable", "ScoredBatch", "compile_model"]

MSG_NOT_COMPILABLE = (
    "the model cannot be compiled for serving: {reason}. clinval serves the plan's locked "
    "family (logistic regression after the locked preprocessing) and its recalibrations."
)


class ModelNotCompilable(ClinvalError, ValueError):
    """The fitted model is not a structure :func:`compile_model` knows."""


@dataclass(frozen=True)
class ScoredBatch:
    """Risks for a batch of records and the categories the model had never seen.

    Attributes
    ----------
    risk : numpy.ndarray
        Probability of the positive outcome, one per record.
    unseen : tuple of tuple of str
        Per record, the categorical features whose (non-missing) value was not seen in
        training (scored as the locked preprocessing does: that feature adds nothing).
    """

    risk: np.ndarray
    unseen: tuple[tuple[str, ...], ...]

    def unseen_counts(self) -> dict[str, int]:
        """Number of records with an unseen category, per feature."""
        counts: dict[str, int] = {}
        for features in self.unseen:
            for feature in features:
                counts[feature] = counts.get(feature, 0) + 1
        return counts


@dataclass(frozen=True)
class CompiledScorer:
    """Fitted parameters of the locked pipeline as arrays.

    Attributes
    ----------
    numeric, categorical : tuple of str
        Input columns in the pipeline's order.
    medians, means, scales : numpy.ndarray
        Imputation value and standardisation of each numeric column.
    categories : tuple of dict
        Per categorical column, category -> column of the design matrix.
    missing_category : str
        The category a missing categorical value becomes.
    coef : numpy.ndarray
        Logistic regression coefficients over the design matrix columns.
    intercept : float
    recalibration : tuple of float or None
        ``(intercept, slope)`` of a logistic recalibration applied after the pipeline.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    medians: np.ndarray = field(repr=False)
    means: np.ndarray = field(repr=False)
    scales: np.ndarray = field(repr=False)
    categories: tuple[Mapping[Any, int], ...] = field(repr=False)
    missing_category: str
    coef: np.ndarray = field(repr=False)
    intercept: float
    recalibration: tuple[float, float] | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """All inputs, numeric first (the study schema's order)."""
        return self.numeric + self.categorical

    def score(self, records: Sequence[Mapping[str, Any]]) -> ScoredBatch:
        """Score records given as mappings of feature -> value (None for missing)."""
        numeric = np.array(
            [[_number(record[name]) for name in self.numeric] for record in records], dtype=float
        ).reshape(len(records), len(self.numeric))
        columns = [[record[name] for record in records] for name in self.categorical]
        return self._score(numeric, columns)

    def score_frame(self, frame: pd.DataFrame) -> ScoredBatch:
        """Score the rows of a frame holding the feature columns (NA for missing)."""
        numeric = frame[list(self.numeric)].to_numpy(dtype=float, na_value=np.nan)
        columns = [
            frame[name].astype(object).where(frame[name].notna(), None).tolist()
            for name in self.categorical
        ]
        return self._score(numeric.reshape(len(frame), len(self.numeric)), columns)

    def _score(self, numeric: np.ndarray, columns: Sequence[Sequence[Any]]) -> ScoredBatch:
        n = numeric.shape[0]
        design = np.zeros((n, self.coef.size))
        filled = np.where(np.isnan(numeric), self.medians, numeric)
        design[:, : len(self.numeric)] = (filled - self.means) / self.scales
        rows: list[int] = []
        cols: list[int] = []
        unseen: list[list[str]] = [[] for _ in range(n)]
        for name, mapping, values in zip(self.categorical, self.categories, columns):
            for row, value in enumerate(values):
                column = mapping.get(self.missing_category if value is None else value)
                if column is None:
                    if value is not None:  # a missing value is not an unseen category
                        unseen[row].append(name)
                else:
                    rows.append(row)
                    cols.append(column)
        design[rows, cols] = 1.0
        risk = expit(design @ self.coef + self.intercept)
        if self.recalibration is not None:
            a, b = self.recalibration
            risk = recalibrated(risk, a, b)
        return ScoredBatch(risk=risk, unseen=tuple(tuple(u) for u in unseen))


def _number(value: Any) -> float:
    return np.nan if value is None else value


def compile_model(model: Any) -> CompiledScorer:
    """Compile a fitted locked pipeline (or a recalibration of one).

    Raises
    ------
    ModelNotCompilable
        If the model is not the locked structure; the message says what differs.
    """
    # an unpickled RecalibratedModel has imported its module; importing it otherwise costs a second
    revalidation = sys.modules.get("clinval.revalidation")
    if revalidation is not None and isinstance(model, revalidation.RecalibratedModel):
        base = compile_model(model.locked)
        if base.recalibration is not None:
            raise ModelNotCompilable(MSG_NOT_COMPILABLE.format(reason="a recalibration of a recalibration"))
        return CompiledScorer(**{**base.__dict__, "recalibration": (model.intercept, model.slope)})
    return _compile_pipeline(model)


def _compile_pipeline(pipeline: Any) -> CompiledScorer:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def refuse(reason: str) -> ModelNotCompilable:
        return ModelNotCompilable(MSG_NOT_COMPILABLE.format(reason=reason))

    if not isinstance(pipeline, Pipeline) or [name for name, _ in pipeline.steps] != ["preprocess", "classifier"]:
        raise refuse("expected a Pipeline with steps 'preprocess' and 'classifier'")
    preprocess, classifier = pipeline.named_steps["preprocess"], pipeline.named_steps["classifier"]
    if not isinstance(classifier, LogisticRegression) or classifier.coef_.shape[0] != 1:
        raise refuse("the classifier is not a binary LogisticRegression")
    if not isinstance(preprocess, ColumnTransformer):
        raise refuse("the preprocessing is not a ColumnTransformer")
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    medians = means = scales = np.empty(0)
    categories: list[dict[Any, int]] = []
    missing_category = ""
    blocks = [(n, t, c) for n, t, c in preprocess.transformers_ if len(c) and not (n == "remainder" and t == "drop")]
    if [n for n, _, _ in blocks] not in (["numeric", "categorical"], ["numeric"], ["categorical"]):
        raise refuse(f"preprocessing blocks {[n for n, _, _ in blocks]}, not 'numeric' then 'categorical'")
    for name, transformer, columns in blocks:
        steps = dict(transformer.steps) if isinstance(transformer, Pipeline) else {}
        if name == "numeric":
            impute, scale = steps.get("impute"), steps.get("scale")
            if not (isinstance(impute, SimpleImputer) and impute.strategy == "median" and isinstance(scale, StandardScaler)):
                raise refuse("numeric features are not median-imputed and standardised")
            numeric = tuple(map(str, columns))
            medians = np.asarray(impute.statistics_, dtype=float)
            means = np.asarray(scale.mean_, dtype=float) if scale.with_mean else np.zeros(len(numeric))
            scales = np.asarray(scale.scale_, dtype=float) if scale.with_std else np.ones(len(numeric))
        elif name == "categorical":
            impute, encode = steps.get("impute"), steps.get("encode")
            if not (isinstance(impute, SimpleImputer) and impute.strategy == "constant" and isinstance(encode, OneHotEncoder)):
                raise refuse("categorical features are not constant-imputed and one-hot encoded")
            if encode.handle_unknown != "ignore" or encode.drop is not None or getattr(encode, "infrequent_categories_", None):
                raise refuse("the one-hot encoder must ignore unknown categories and drop nothing")
            categorical = tuple(map(str, columns))
            missing_category = impute.fill_value
            categories = [{value: i for i, value in enumerate(cats)} for cats in encode.categories_]
    offset = len(numeric)
    for mapping in categories:
        for value in mapping:
            mapping[value] += offset
        offset += len(mapping)
    coef = np.asarray(classifier.coef_[0], dtype=float)
    if coef.size != offset:
        raise refuse(f"{coef.size} coefficients for {offset} design columns")
    return CompiledScorer(
        numeric=numeric,
        categorical=categorical,
        medians=medians,
        means=means,
        scales=scales,
        categories=tuple(categories),
        missing_category=missing_category,
        coef=coef,
        intercept=float(classifier.intercept_[0]),
    )
