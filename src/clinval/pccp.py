"""The predetermined change control plan (PCCP): triggers, allowed modifications,
data management and acceptance criteria, read from ``params/pccp.yaml``.

The plan is written before any result is seen. This module turns it into frozen
dataclasses (:func:`plan_from_params`), evaluates its triggers on the monitoring
results (:func:`drift_alerts`, :func:`fairness_alerts`), refuses modifications it does
not allow (:func:`check_modification`), and evaluates a candidate against its acceptance
criteria (:func:`evaluate_criteria`).

Alert ids are deterministic: ``<trigger>-<period>-<digest>``, where the digest covers
the trigger, the period and the period's data (record ids, labels, predicted risks).
The same data give the same id on every clone, so an approval signed today still
matches its alert after a clean-clone ``dvc repro``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np
import pandas as pd

from clinval import layout
from clinval.errors import ClinvalError, InputError

__all__ = [
    "APPROVALS",
    "CRITERIA",
    "RULES",
    "Alert",
    "ChangeControlPlan",
    "CriterionResult",
    "Modification",
    "ModificationRefused",
    "PlanError",
    "Trigger",
    "alert_id",
    "check_modification",
    "drift_alerts",
    "evaluate_criteria",
    "fairness_alerts",
    "period_digest",
    "plan_from_params",
    "plan_fits_study",
    "require_plan_fits_study",
    "training_data_breaches",
    "plan_summary",
    "triggers_from_params",
]

RULES = ("ci_outside", "ci_below_reference", "drifted_features", "missing_or_new_categories", "flagged_disparities")
CRITERIA = {
    "auroc_noninferiority": ("margin",),
    "calibration_slope": ("bounds",),
    "observed_expected": ("includes",),
    "subgroup_auroc": ("margin",),
}
"""Acceptance criteria a plan may state, with their required settings."""
"""Trigger rules a plan may use (see ``params/pccp.yaml`` for their meaning)."""
APPROVALS = ("person", "automatic")
SOURCES = ("drift", "fairness")

_ERR_PLAN = "params/pccp.yaml: {problem}"
_ERR_REFUSED_UNKNOWN = "modification {name!r} is not allowed by the change control plan; it allows {allowed}."
_ERR_REFUSED_LOCKED = "the change control plan locks {what}: the plan has {locked!r}, the candidate has {actual!r}."
_ERR_SEQUESTERED = "periods {periods} are sequestered for evaluation in the change control plan and may never be used for training."
_ERR_NOT_PERMITTED = "periods {periods} are not among the plan's training periods {allowed}."


class PlanError(InputError):
    """``params/pccp.yaml`` is malformed; the message names the key."""


class ModificationRefused(ClinvalError, ValueError):
    """A modification the change control plan does not allow."""


@dataclass(frozen=True)
class Modification:
    """A change the plan allows, and who must approve it."""

    name: str
    description: str
    approval: str


@dataclass(frozen=True)
class Trigger:
    """An event that opens an alert and pulls the affected records for review."""

    name: str
    source: str
    rule: str
    description: str
    metric: str | None = None
    bounds: tuple[float, float] | None = None
    null_value: float | None = None
    margin: float | None = None
    min_count: int | None = None
    modification: str | None = None


@dataclass(frozen=True)
class ChangeControlPlan:
    """The whole plan."""

    version: int
    locked_features: tuple[str, ...]
    locked_model_family: str
    locked_preprocessing: str
    modifications: Mapping[str, Modification]
    triggers: Mapping[str, Trigger]
    training_periods: tuple[str, ...]
    sequestered_periods: tuple[str, ...]
    criteria: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Alert:
    """A fired trigger for one period, with its evidence."""

    id: str
    kind: str
    trigger: str
    period: str
    summary: str
    modification: str | None
    n_records: int
    queue_file: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CriterionResult:
    """One acceptance criterion evaluated on the sequestered data."""

    criterion: str
    requirement: str
    result: str
    passed: bool


# ---------------------------------------------------------------------------- reading


def _need(mapping: Mapping, key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise PlanError(_ERR_PLAN.format(problem=f"missing key '{where}{key}'."))
    return mapping[key]


def triggers_from_params(params: Mapping[str, Any], *, modifications: Mapping[str, Modification] | None = None) -> dict[str, Trigger]:
    """Check the ``triggers`` section of a parsed ``pccp.yaml`` and return its triggers.

    Only ``params["triggers"]`` is read, so the drift and fairness records depend on that
    section alone (DVC tracks ``params/pccp.yaml: [triggers]`` for them). With
    ``modifications``, each trigger's modification must be one of them.
    """
    triggers = {}
    for name, spec in (_need(params, "triggers", "") or {}).items():
        where = f"triggers.{name}."
        source, rule = _need(spec, "source", where), _need(spec, "rule", where)
        if source not in SOURCES:
            raise PlanError(_ERR_PLAN.format(problem=f"{where}source is {source!r}; use one of {list(SOURCES)}."))
        if rule not in RULES:
            raise PlanError(_ERR_PLAN.format(problem=f"{where}rule is {rule!r}; use one of {list(RULES)}."))
        modification = spec.get("modification")
        if modification is not None and modifications is not None and modification not in modifications:
            raise PlanError(_ERR_PLAN.format(problem=f"{where}modification {modification!r} is not one of the plan's modifications {sorted(modifications)}."))
        bounds = spec.get("bounds")
        trigger = Trigger(
            name=name, source=source, rule=rule, description=str(spec.get("description", name)),
            metric=spec.get("metric"), bounds=tuple(float(b) for b in bounds) if bounds else None,
            null_value=spec.get("null_value"), margin=spec.get("margin"), min_count=spec.get("min_count"),
            modification=modification,
        )
        required = {"ci_outside": ("metric", "bounds", "null_value"), "ci_below_reference": ("metric", "margin"),
                    "drifted_features": ("min_count",), "missing_or_new_categories": ("min_count",),
                    "flagged_disparities": ("min_count",)}[rule]
        for key in required:
            if getattr(trigger, key) is None:
                raise PlanError(_ERR_PLAN.format(problem=f"rule {rule!r} needs '{where}{key}'."))
        triggers[name] = trigger
    return triggers


def plan_from_params(params: Mapping[str, Any]) -> ChangeControlPlan:
    """Check a parsed ``pccp.yaml`` and return the plan."""
    locked = _need(params, "locked", "")
    modifications = {}
    for name, spec in (_need(params, "modifications", "") or {}).items():
        approval = _need(spec, "approval", f"modifications.{name}.")
        if approval not in APPROVALS:
            raise PlanError(_ERR_PLAN.format(problem=f"modifications.{name}.approval is {approval!r}; use one of {list(APPROVALS)}."))
        modifications[name] = Modification(name=name, description=str(_need(spec, "description", f"modifications.{name}.")), approval=approval)
    triggers = triggers_from_params(params, modifications=modifications)
    data = _need(params, "data_management", "")
    training = tuple(str(p) for p in _need(data, "training_periods", "data_management."))
    sequestered = tuple(str(p) for p in _need(data, "sequestered_periods", "data_management."))
    overlap = sorted(set(training) & set(sequestered))
    if overlap:
        raise PlanError(_ERR_PLAN.format(problem=f"periods {overlap} are both training and sequestered periods."))
    criteria = dict(_need(params, "acceptance_criteria", ""))
    if not criteria:
        raise PlanError(_ERR_PLAN.format(problem="'acceptance_criteria' is empty; a candidate must be judged against at least one criterion."))
    for name, spec in criteria.items():
        if name not in CRITERIA:
            raise PlanError(_ERR_PLAN.format(problem=f"unknown acceptance criterion {name!r}; known criteria are {sorted(CRITERIA)}."))
        for key in CRITERIA[name]:
            _need(spec, key, f"acceptance_criteria.{name}.")
    return ChangeControlPlan(
        version=int(params.get("version", 1)),
        locked_features=tuple(_need(locked, "features", "locked.")),
        locked_model_family=str(_need(locked, "model_family", "locked.")),
        locked_preprocessing=str(locked.get("preprocessing", "")),
        modifications=modifications,
        triggers=triggers,
        training_periods=training,
        sequestered_periods=sequestered,
        criteria=criteria,
    )


# ---------------------------------------------------------------------------- alerts


RISK_DIGITS = 6
"""Predicted risks enter alert ids rounded to this many decimals: a new model changes them
far more, while the last-bit differences of another CPU architecture (see
:mod:`clinval.numeric_env`) almost never do, so an approval keeps its alert."""


def period_digest(frame: pd.DataFrame) -> str:
    """SHA-256 over a period's record ids, labels and predicted risks rounded to
    :data:`RISK_DIGITS` decimals (order-independent)."""
    cols = [c for c in ("record_id", "label", "predicted_risk") if c in frame.columns]
    ordered = frame[cols].sort_values("record_id", kind="stable") if "record_id" in cols else frame[cols]
    if "predicted_risk" in cols:
        ordered = ordered.assign(predicted_risk=ordered["predicted_risk"].round(RISK_DIGITS))
    hashed = pd.util.hash_pandas_object(ordered.astype({"label": "float64"}) if "label" in cols else ordered, index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def alert_id(trigger: str, period: str, data_digest: str) -> str:
    """``<trigger>-<period>-<10 hex>``: stable for the same trigger, period and data."""
    digest = hashlib.sha256(f"{trigger}\0{period}\0{data_digest}".encode()).hexdigest()[:10]
    return f"{trigger}-{period}-{digest}"


def _alert(trigger: Trigger, period: str, frame: pd.DataFrame, summary: str, evidence: Mapping[str, Any]) -> Alert:
    aid = alert_id(trigger.name, period, period_digest(frame))
    return Alert(id=aid, kind=trigger.source, trigger=trigger.name, period=period, summary=summary,
                 modification=trigger.modification, n_records=int(len(frame)),
                 queue_file=layout.queue_file(aid), evidence=dict(evidence))


def _metric_row(performance: pd.DataFrame, period: str, metric: str) -> pd.Series | None:
    rows = performance[(performance["period"] == period) & (performance["metric"] == metric)]
    if rows.empty or rows.iloc[0]["status"] != "ok":
        return None
    return rows.iloc[0]


def drift_alerts(
    triggers: Mapping[str, Trigger],
    *,
    log: pd.DataFrame,
    performance: pd.DataFrame,
    reference_performance: pd.DataFrame,
    drift: pd.DataFrame,
) -> list[Alert]:
    """Evaluate the plan's drift triggers for every production period.

    Parameters
    ----------
    triggers
        The plan's triggers (:func:`triggers_from_params`, or ``plan.triggers``).
    log
        The prediction log (``period``, ``record_id``, ``label``, ``predicted_risk``).
    performance
        Per-period metrics: ``period``, ``metric``, ``value``, ``lower``, ``upper``, ``status``.
    reference_performance
        The same columns (without ``period``) for the reference hold-out.
    drift
        Per-period, per-feature drift results with ``period``, ``feature``, ``drifted``.
    """
    alerts = []
    periods = [p for p in pd.unique(log["period"]) if p != "reference"]
    for trigger in triggers.values():
        if trigger.source != "drift":
            continue
        for period in periods:
            frame = log[log["period"] == period]
            fired = _drift_rule(trigger, period, performance, reference_performance, drift)
            if fired is not None:
                alerts.append(_alert(trigger, period, frame, *fired))
    return sorted(alerts, key=lambda a: (periods.index(a.period), a.trigger))


def _drift_rule(trigger, period, performance, reference_performance, drift) -> tuple[str, dict] | None:
    if trigger.rule == "ci_outside":
        row = _metric_row(performance, period, trigger.metric)
        if row is None:
            return None
        low, high = trigger.bounds
        outside = row["value"] < low or row["value"] > high
        excludes = not (row["lower"] <= trigger.null_value <= row["upper"])
        if outside and excludes:
            direction = "over-predicts" if trigger.metric == "O/E" and row["value"] < 1 else "under-predicts" if trigger.metric == "O/E" else "is off"
            summary = (f"{period}: {trigger.metric} {row['value']:.2f} (95% CI {row['lower']:.2f} to {row['upper']:.2f}) lies outside "
                       f"[{low:g}, {high:g}] and its CI excludes {trigger.null_value:g}: the model {direction} risk.")
            return summary, {"metric": trigger.metric, "value": row["value"], "lower": row["lower"], "upper": row["upper"], "n": int(row["n"])}
    elif trigger.rule == "ci_below_reference":
        row = _metric_row(performance, period, trigger.metric)
        ref = reference_performance[reference_performance["metric"] == trigger.metric]
        if row is None or ref.empty or ref.iloc[0]["status"] != "ok":
            return None
        reference = float(ref.iloc[0]["value"])
        if row["upper"] < reference - trigger.margin:
            summary = (f"{period}: {trigger.metric} {row['value']:.2f} (95% CI {row['lower']:.2f} to {row['upper']:.2f}) is more than "
                       f"{trigger.margin:g} below the reference {reference:.2f}.")
            return summary, {"metric": trigger.metric, "value": row["value"], "lower": row["lower"], "upper": row["upper"], "reference": reference}
    elif trigger.rule == "drifted_features":
        rows = drift[(drift["period"] == period) & drift["drifted"].astype(bool)]
        if len(rows) >= trigger.min_count:
            names = ", ".join(rows["feature"].astype(str))
            summary = f"{period}: {len(rows)} features drifted after false-discovery-rate control ({names})."
            return summary, {"drifted_features": rows["feature"].astype(str).tolist()}
    elif trigger.rule == "missing_or_new_categories":
        here = drift[drift["period"] == period]
        missing = here[here["missing_drifted"].astype(bool)] if "missing_drifted" in here else here.iloc[:0]
        new = here[here["new_level_drifted"].astype(bool)] if "new_level_drifted" in here else here.iloc[:0]
        if len(set(missing["feature"]) | set(new["feature"])) >= trigger.min_count:
            parts = [f"the missing rate of {r['feature']} went from {r['missing_rate_reference']:.1%} to "
                     f"{r['missing_rate_current']:.1%}" for _, r in missing.iterrows()]
            parts += [f"{r['feature']} shows {r['unseen_categories']} categor{'y' if r['unseen_categories'] == 1 else 'ies'} "
                      f"unseen in the reference ({r['unseen_rate']:.1%} of values)" for _, r in new.iterrows()]
            summary = f"{period}: " + "; ".join(parts) + " (false-discovery-rate controlled)."
            return summary, {"missing_rate_changed": missing["feature"].astype(str).tolist(),
                             "new_categories": new["feature"].astype(str).tolist()}
    return None


def fairness_alerts(triggers: Mapping[str, Trigger], *, log: pd.DataFrame, flagged: Sequence[Any]) -> list[Alert]:
    """Evaluate the plan's fairness triggers (``plan.triggers``) on flagged disparities (mappings or
    dataclasses with at least ``period`` and ``sentence``), production periods only:
    gaps in the reference period are the baseline the locked model was accepted with."""
    flagged = [asdict(f) if is_dataclass(f) else dict(f) for f in flagged]
    alerts = []
    periods = [p for p in pd.unique(log["period"]) if p != "reference"]
    for trigger in triggers.values():
        if trigger.source != "fairness":
            continue
        for period in periods:
            hits = [f for f in flagged if str(f["period"]) == period]
            if len(hits) >= trigger.min_count:
                frame = log[log["period"] == period]
                summary = f"{period}: {len(hits)} flagged disparit{'y' if len(hits) == 1 else 'ies'}. " + " ".join(str(h["sentence"]) for h in hits[:3])
                alerts.append(_alert(trigger, period, frame, summary, {"flagged": hits}))
    return alerts


def plan_summary(plan: ChangeControlPlan) -> pd.DataFrame:
    """The plan as a table a reviewer reads: section, item, what it says."""
    rows = [
        ("locked", "features", ", ".join(plan.locked_features)),
        ("locked", "model family", plan.locked_model_family),
        ("locked", "preprocessing", plan.locked_preprocessing),
    ]
    rows += [("modification", m.name, f"{m.description} Approval: {m.approval}.") for m in plan.modifications.values()]
    rows += [("trigger", t.name, f"{t.description} Leads to: {t.modification or 'review only'}.") for t in plan.triggers.values()]
    rows += [("data management", "training periods", ", ".join(plan.training_periods)),
             ("data management", "sequestered periods", ", ".join(plan.sequestered_periods) + " (never used for training)")]
    rows += [("acceptance criterion", name, ", ".join(f"{k}: {v}" for k, v in spec.items())) for name, spec in plan.criteria.items()]
    return pd.DataFrame(rows, columns=["section", "item", "plan"])


# ---------------------------------------------------------------------------- changes


def check_modification(plan: ChangeControlPlan, *, modification: str, features: Sequence[str], model_family: str,
                       training_periods: Sequence[str]) -> Modification:
    """Refuse anything the plan does not allow; return the allowed modification."""
    if modification not in plan.modifications:
        raise ModificationRefused(_ERR_REFUSED_UNKNOWN.format(name=modification, allowed=sorted(plan.modifications)))
    if set(features) != set(plan.locked_features):
        raise ModificationRefused(_ERR_REFUSED_LOCKED.format(what="the feature list", locked=list(plan.locked_features), actual=list(features)))
    if model_family != plan.locked_model_family:
        raise ModificationRefused(_ERR_REFUSED_LOCKED.format(what="the model family", locked=plan.locked_model_family, actual=model_family))
    sequestered, outside = training_data_breaches(plan, training_periods)
    if sequestered:
        raise ModificationRefused(_ERR_SEQUESTERED.format(periods=sequestered))
    if outside:
        raise ModificationRefused(_ERR_NOT_PERMITTED.format(periods=outside, allowed=list(plan.training_periods)))
    return plan.modifications[modification]


def training_data_breaches(plan: ChangeControlPlan, training_periods: Sequence[str]) -> tuple[list[str], list[str]]:
    """The plan's data-management rule, written once: the periods a model was (or would be)
    trained on that are sequestered, and those outside the permitted training periods."""
    trained = set(map(str, training_periods))
    return sorted(trained & set(plan.sequestered_periods)), sorted(trained - set(plan.training_periods))


def evaluate_criteria(
    plan: ChangeControlPlan,
    *,
    auroc_difference,
    calibration_slope,
    observed_expected,
    subgroup_differences: Mapping[str, Any],
) -> list[CriterionResult]:
    """Evaluate every acceptance criterion in the plan.

    Parameters are the candidate's results on the sequestered periods: the paired
    AUROC difference (candidate - locked; ``clinval.performance.PairedDifference``),
    the calibration slope and observed/expected (``Estimate``), and a paired difference
    per sensitive group.
    """
    results = []
    crit = plan.criteria
    if "auroc_noninferiority" in crit:
        margin = float(crit["auroc_noninferiority"]["margin"])
        d = auroc_difference
        ok = d.status == "ok" and d.lower > -margin
        results.append(CriterionResult(
            "AUROC non-inferiority", f"lower 95% bound of AUROC(candidate) - AUROC(locked) > -{margin:g}",
            _interval_text(d.difference, d.lower, d.upper, d.status), bool(ok)))
    if "calibration_slope" in crit:
        low, high = (float(b) for b in crit["calibration_slope"]["bounds"])
        s = calibration_slope
        ok = s.status == "ok" and low <= s.value <= high and s.lower <= 1 <= s.upper
        results.append(CriterionResult(
            "calibration slope", f"slope within [{low:g}, {high:g}] and its 95% CI includes 1",
            _interval_text(s.value, s.lower, s.upper, s.status), bool(ok)))
    if "observed_expected" in crit:
        target = float(crit["observed_expected"]["includes"])
        oe = observed_expected
        ok = oe.status == "ok" and oe.lower <= target <= oe.upper
        results.append(CriterionResult(
            "observed/expected", f"95% CI of O/E includes {target:g}", _interval_text(oe.value, oe.lower, oe.upper, oe.status), bool(ok)))
    if "subgroup_auroc" in crit:
        margin = float(crit["subgroup_auroc"]["margin"])
        waived = _waived_groups(crit["subgroup_auroc"].get("waive_not_estimable"), subgroup_differences)
        worse = [g for g, d in subgroup_differences.items() if d.status == "ok" and d.upper < -margin]
        estimable = [g for g, d in subgroup_differences.items() if d.status == "ok"]
        not_estimable = [g for g, d in subgroup_differences.items() if d.status != "ok"]
        text = "; ".join(f"{g}: {_interval_text(d.difference, d.lower, d.upper, d.status)}" for g, d in subgroup_differences.items())
        unjudged = [g for g in not_estimable if g not in waived]
        requirement = f"no group's paired AUROC difference has an upper 95% bound below -{margin:g}, and every group estimable"
        if waived:
            requirement += f" (the plan waives: {', '.join(g for g in not_estimable if g in waived)})"
        # a group that cannot be judged is missing evidence: it fails unless the plan waives it in advance
        results.append(CriterionResult("subgroup AUROC", requirement, text or "no groups",
                                       bool(estimable) and not worse and not unjudged))
    return results


def _waived_groups(waiver: Any, groups: Mapping[str, Any]) -> set[str]:
    """Groups whose not-estimable result the plan accepts: ``waive_not_estimable: true``
    (all) or a list of group names (``"age_band 80+"``)."""
    if waiver is True:
        return set(groups)
    if not waiver:
        return set()
    return {str(g) for g in waiver}


def plan_fits_study(plan: ChangeControlPlan, *, features: Sequence[str], periods: Sequence[str]) -> list[str]:
    """Problems between the plan and the study it is applied to (empty: they fit).

    The locked features are compared as a set (the order of a list in YAML carries no
    meaning); the plan's training and sequestered periods must be production periods of
    the study.
    """
    problems = []
    locked, study = set(plan.locked_features), set(features)
    if locked != study:
        missing, extra = sorted(locked - study), sorted(study - locked)
        problems.append(
            "the plan's locked features differ from the study's features"
            + (f": {missing} locked but not in the study" if missing else "")
            + (f"{';' if missing else ':'} {extra} in the study but not locked" if extra else "")
            + ". Update locked.features in params/pccp.yaml (a changed feature set is a new submission, not a modification)."
        )
    for name, listed in (("training_periods", plan.training_periods), ("sequestered_periods", plan.sequestered_periods)):
        unknown = [p for p in listed if p not in periods]
        if unknown:
            problems.append(f"data_management.{name} {unknown} are not production periods of the study ({', '.join(periods)}).")
    return problems


def require_plan_fits_study(plan: ChangeControlPlan, *, features: Sequence[str], periods: Sequence[str]) -> None:
    """Raise :class:`PlanError` with every problem :func:`plan_fits_study` finds.

    Called by each stage that reads the plan (``clinval study check`` before the pipeline,
    building and evaluating candidates), so a plan left over from another study is refused
    before anything is built, not after a signed approval.
    """
    problems = plan_fits_study(plan, features=features, periods=periods)
    if problems:
        raise PlanError("params/pccp.yaml does not fit the study: " + " ".join(problems))


def _interval_text(value: float, lower: float, upper: float, status: str) -> str:
    if status != "ok" or any(np.isnan(x) for x in (value, lower, upper)):
        return status
    return f"{value:.3f} (95% CI {lower:.3f} to {upper:.3f})"
