"""Revalidation: build the candidate the change control plan allows for each approved
alert, and evaluate it against the plan's acceptance criteria.

:func:`build_candidates` reads the approval cache (``audit/approvals/``: signed ledger
lines), checks each offline (:func:`clinval.review.check_approval`), refuses what the plan
does not allow (:func:`clinval.pccp.check_modification`), and fits the allowed modification
on the plan's training periods only. Each candidate names the e-signatures it was built
from (seq and digest) and the plan's digest, so ``clinval audit record`` can put them in
the ledger and promotion can check them there:

``recalibration``  logistic recalibration of the locked model: ``logit(p') = a + b logit(p)``;
                   features, preprocessing and coefficients' ratios unchanged.
``refit``          the locked recipe refitted on the training periods (same features,
                   preprocessing and model family).

:func:`evaluate_candidate` compares a candidate with the locked model on the
sequestered periods (never used for training) with paired statistics and returns the
criterion-by-criterion verdict: promote only if every criterion passes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from clinval import layout, performance
from clinval._io import atomic_directory
from clinval.data import REFERENCE, Schema
from clinval.disclosure import calibration_table
from clinval.gate import AUTOMATIC
from clinval.model import ModelCard, build_pipeline, feature_frame, score
from clinval.pccp import (
    ChangeControlPlan,
    CriterionResult,
    ModificationRefused,
    check_modification,
    evaluate_criteria,
    require_plan_fits_study,
)
from clinval.review import Approval, check_approval
from clinval.risk import logit, recalibrated

__all__ = [
    "MODIFICATIONS",
    "Candidate",
    "CandidateEvaluation",
    "RecalibratedModel",
    "build_candidates",
    "evaluate_candidate",
    "evaluation_record",
    "load_candidates",
    "write_candidates",
]

MODIFICATIONS = ("recalibration", "refit")
"""Modifications clinval knows how to build (the plan decides which are allowed)."""
MANIFEST = "manifest.json"
MODEL_FILE = "model.joblib"


class RecalibratedModel:
    """The locked pipeline followed by logistic recalibration of its risk."""

    def __init__(self, locked, intercept: float, slope: float):
        self.locked, self.intercept, self.slope = locked, float(intercept), float(slope)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        q = recalibrated(self.locked.predict_proba(features)[:, 1], self.intercept, self.slope)
        return np.column_stack([1 - q, q])


@dataclass(frozen=True)
class Candidate:
    """A changed model built under the plan, with where it came from."""

    id: str
    modification: str
    alert_ids: tuple[str, ...]
    approved_by: tuple[str, ...]
    training_periods: tuple[str, ...]
    n_train: int
    training_data_digest: str
    model_file: str
    details: Mapping[str, Any] = field(default_factory=dict)
    approvals: tuple[Mapping[str, Any], ...] = ()
    plan_sha256: str = ""


@dataclass(frozen=True)
class CandidateEvaluation:
    """A candidate against the locked model on the sequestered periods."""

    candidate: Candidate
    periods: tuple[str, ...]
    metrics: pd.DataFrame            # model, metric, value, lower, upper, status
    auroc_difference: performance.PairedDifference
    subgroup_differences: Mapping[str, performance.PairedDifference]
    criteria: tuple[CriterionResult, ...]
    calibration: pd.DataFrame        # model, bin, n, mean_predicted, observed, lower, upper

    @property
    def decision(self) -> str:
        return "promote" if self.criteria and all(c.passed for c in self.criteria) else "reject"

    def reasons(self) -> list[str]:
        """One sentence per criterion, saying whether and why it passed."""
        return [f"{c.criterion}: {'passed' if c.passed else 'FAILED'} ({c.requirement}; result {c.result})." for c in self.criteria]


def _digest(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    hashed = pd.util.hash_pandas_object(frame[list(columns)].astype({"label": "float64"}), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def _fit(modification: str, *, locked, card: ModelCard, schema: Schema, rows: pd.DataFrame):
    y = rows["label"].astype(int).to_numpy()
    if modification == "recalibration":
        # an unpenalised logistic regression (C = inf) of the outcome on the locked logit
        fit = LogisticRegression(C=np.inf, max_iter=1000).fit(logit(rows["predicted_risk"].to_numpy())[:, None], y)
        intercept, slope = float(fit.intercept_[0]), float(fit.coef_[0, 0])
        return RecalibratedModel(locked, intercept, slope), {"intercept": round(intercept, 10), "slope": round(slope, 10)}
    pipeline = build_pipeline(schema, card.recipe)
    pipeline.fit(feature_frame(rows, schema), y)
    return pipeline, {"recipe": asdict(card.recipe)}


def _production_periods(log: pd.DataFrame) -> list[str]:
    return [str(p) for p in pd.unique(log["period"]) if p != REFERENCE]


def build_candidates(
    *,
    approvals: Sequence[Approval],
    current_alerts: Sequence[Mapping[str, Any]],
    plan: ChangeControlPlan,
    log: pd.DataFrame,
    locked,
    card: ModelCard,
    schema: Schema,
    plan_sha256: str = "",
) -> tuple[list[tuple[Candidate, Any]], list[dict[str, str]]]:
    """Build one candidate per allowed modification that an approved alert calls for.

    ``plan_sha256`` is the digest of the plan file ``plan`` was read from; each candidate
    carries it. Returns the candidates (with their fitted models) and the refusals, each a
    mapping ``{alert_id, reason}``: approvals that do not verify, alerts not in the current
    run, alerts without an allowed modification, or modifications the plan refuses.
    """
    # a plan that does not fit the model (another feature list, other periods) is refused per
    # approval by check_modification, so the record says why nothing was built
    current = {a["id"]: a for a in current_alerts}
    wanted: dict[str, list[Approval]] = {}
    automatic: dict[str, list[str]] = {}
    refusals = []
    for alert in current_alerts:  # the plan lets these modifications follow their trigger without a person
        modification = alert.get("modification")
        if modification in plan.modifications and plan.modifications[modification].approval == "automatic":
            automatic.setdefault(modification, []).append(alert["id"])
    for approval in approvals:
        problem = check_approval(approval)
        if problem:
            refusals.append({"alert_id": approval.alert_id, "reason": str(problem)})
            continue
        if not approval.approved:
            continue
        if approval.alert_id not in current:
            refusals.append({"alert_id": approval.alert_id, "reason": "the approved alert is not raised by the current run (data or plan changed); nothing to build."})
            continue
        modification = current[approval.alert_id].get("modification")
        if not modification:
            refusals.append({"alert_id": approval.alert_id, "reason": "the plan attaches no modification to this trigger: review only."})
            continue
        try:
            check_modification(plan, modification=modification, features=card.features,
                               model_family=card.recipe.estimator, training_periods=plan.training_periods)
            if modification not in MODIFICATIONS:
                raise ModificationRefused(f"clinval cannot build modification {modification!r}; it builds {list(MODIFICATIONS)}.")
        except ModificationRefused as exc:
            refusals.append({"alert_id": approval.alert_id, "reason": f"refused: {exc}"})
            continue
        wanted.setdefault(modification, []).append(approval)
    for modification, alert_ids in automatic.items():
        try:
            check_modification(plan, modification=modification, features=card.features,
                               model_family=card.recipe.estimator, training_periods=plan.training_periods)
        except ModificationRefused as exc:
            refusals.extend({"alert_id": a, "reason": f"refused: {exc}"} for a in alert_ids)
            continue
        wanted.setdefault(modification, [])
    automatic_ids = {m: a for m, a in automatic.items() if m in wanted}

    rows = log[log["period"].isin(plan.training_periods) & log["label"].notna()]
    built = []
    for modification, approved in sorted(wanted.items()):
        if rows.empty:
            ids = [a.alert_id for a in approved] + list(automatic_ids.get(modification, ()))
            refusals.extend({"alert_id": a, "reason": f"no labelled records in the training periods {list(plan.training_periods)}."} for a in ids)
            continue
        digest = _digest(rows, ["record_id", "label", *schema.features])
        cid = f"{modification}-{hashlib.sha256(f'{modification}|{digest}|{card.training_data_sha256}'.encode()).hexdigest()[:10]}"
        fitted, details = _fit(modification, locked=locked, card=card, schema=schema, rows=rows)
        alert_ids = {a.alert_id for a in approved} | set(automatic_ids.get(modification, ()))
        candidate = Candidate(
            id=cid, modification=modification, alert_ids=tuple(sorted(alert_ids)),
            approved_by=tuple(sorted({a.signer for a in approved})) or (AUTOMATIC,),
            training_periods=tuple(plan.training_periods),
            n_train=int(len(rows)), training_data_digest=digest, model_file=layout.candidate_model_file(cid, MODEL_FILE),
            details=details, approvals=tuple(sorted((a.reference() for a in approved), key=lambda r: r["seq"])),
            plan_sha256=plan_sha256,
        )
        built.append((candidate, fitted))
    return built, refusals


def write_candidates(built: Sequence[tuple[Candidate, Any]], refusals: Sequence[Mapping[str, str]],
                     out_dir: str | os.PathLike) -> Path:
    """Write each candidate's model and card, and a manifest (all or nothing)."""
    with atomic_directory(out_dir) as tmp:
        for candidate, fitted in built:
            (tmp / candidate.id).mkdir()
            joblib.dump(fitted, tmp / candidate.id / MODEL_FILE, compress=3)
            (tmp / candidate.id / "card.json").write_text(json.dumps(asdict(candidate), indent=2, sort_keys=True) + "\n")
        manifest = {"candidates": [asdict(c) for c, _ in built], "refusals": list(refusals)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


def load_candidates(candidates_dir: str | os.PathLike) -> tuple[list[tuple[Candidate, Any]], list[dict[str, str]]]:
    """Read what :func:`write_candidates` wrote."""
    candidates_dir = Path(candidates_dir)
    manifest = json.loads((candidates_dir / MANIFEST).read_text())
    built = []
    for raw in manifest["candidates"]:
        candidate = Candidate(**{**raw, **{k: tuple(raw.get(k, ())) for k in
                                            ("alert_ids", "approved_by", "training_periods", "approvals")}})
        built.append((candidate, joblib.load(candidates_dir / candidate.id / MODEL_FILE)))
    return built, manifest["refusals"]


def evaluate_candidate(
    candidate: Candidate,
    fitted,
    *,
    log: pd.DataFrame,
    schema: Schema,
    plan: ChangeControlPlan,
    groups: pd.DataFrame,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_bins: int = 10,
    min_cell_size: int = 11,
) -> CandidateEvaluation:
    """Evaluate ``candidate`` against the locked model on the plan's sequestered periods.

    ``log`` is the prediction log (its ``predicted_risk`` is the locked model's);
    ``groups`` holds sensitive-group columns aligned with ``log`` (one column per
    attribute) for the subgroup criterion.
    """
    require_plan_fits_study(plan, features=schema.features, periods=_production_periods(log))
    rows = log[log["period"].isin(plan.sequestered_periods) & log["label"].notna()]
    y = rows["label"].astype(int).to_numpy()
    locked_risk = rows["predicted_risk"].to_numpy()
    new_risk = score(fitted, rows, schema)
    metrics = pd.concat([
        performance.evaluate(y, locked_risk, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed).assign(model="locked"),
        performance.evaluate(y, new_risk, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed).assign(model=candidate.id),
    ], ignore_index=True)
    metrics = metrics[["model", *[c for c in metrics.columns if c != "model"]]]
    difference = performance.auroc_difference(y, new_risk, locked_risk, confidence=confidence)
    subgroups = {}
    for column in groups.columns:
        values = groups.loc[rows.index, column].astype(str).to_numpy()
        for value in pd.unique(values):
            sel = values == value
            subgroups[f"{column} {value}"] = performance.auroc_difference(y[sel], new_risk[sel], locked_risk[sel], confidence=confidence)
    criteria = evaluate_criteria(
        plan, auroc_difference=difference,
        calibration_slope=performance.calibration_slope(y, new_risk, confidence=confidence),
        observed_expected=performance.observed_expected(y, new_risk, confidence=confidence),
        subgroup_differences=subgroups,
    )
    calibration = pd.concat([
        calibration_table(y, risk, n_bins=n_bins, confidence=confidence, min_cell_size=min_cell_size).assign(model=name)
        for name, risk in (("locked", locked_risk), (candidate.id, new_risk))
    ], ignore_index=True)
    return CandidateEvaluation(candidate=candidate, periods=tuple(plan.sequestered_periods), metrics=metrics,
                               auroc_difference=difference, subgroup_differences=subgroups, criteria=tuple(criteria),
                               calibration=calibration)


def evaluation_record(evaluation: CandidateEvaluation, *, report: str) -> dict[str, Any]:
    """The candidate as the JSON record lists it (read by ``clinval audit record`` and
    ``clinval model promote``)."""
    c = evaluation.candidate
    return {
        "id": c.id, "modification": c.modification, "alert_ids": list(c.alert_ids), "approved_by": list(c.approved_by),
        "approvals": [dict(a) for a in c.approvals], "plan_sha256": c.plan_sha256,
        "model_file": c.model_file, "training_data_digest": c.training_data_digest,
        "training_periods": list(c.training_periods), "sequestered_periods": list(evaluation.periods),
        "decision": evaluation.decision, "reasons": evaluation.reasons(),
        "criteria": [asdict(r) for r in evaluation.criteria], "report": report,
    }
