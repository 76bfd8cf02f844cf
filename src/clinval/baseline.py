"""The locked model as a baseline: where it stands against the change control plan.

The plan's acceptance criteria (``params/pccp.yaml``) are written for a candidate that
would replace the locked model. Held to the same criteria on its own hold-out, the locked
model shows where the baseline stands; a plan whose calibration bound the locked model
already fails is something a reviewer must read before weighing any drift alert.

``performance_headline(table)``   one sentence of AUROC, calibration slope, observed/expected.
``locked_model_against_plan(plan, performance)``   sentences, one per calibration criterion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from clinval.pccp import ChangeControlPlan

__all__ = ["locked_model_against_plan", "performance_headline"]


_HEADLINE_METRICS = (("AUROC", "AUROC"), ("calibration slope", "calibration slope"), ("O/E", "observed/expected"))


def performance_headline(table: pd.DataFrame, *, confidence: float = 0.95) -> str:
    """``AUROC 0.66 (95% CI 0.60 to 0.72), calibration slope ..., observed/expected ...``
    from a :func:`clinval.performance.evaluate` table."""
    from clinval.evidence import format_interval

    by_metric = table.set_index("metric")
    parts = [f"{label} {format_interval(r['value'], r['lower'], r['upper'], confidence=confidence)}"
             for metric, label in _HEADLINE_METRICS if metric in by_metric.index
             for r in [by_metric.loc[metric]] if r["status"] == "ok"]
    return ", ".join(parts) if parts else "performance not estimable"


def locked_model_against_plan(plan: ChangeControlPlan, performance: pd.DataFrame, *, confidence: float = 0.95) -> list[str]:
    """Sentences: does the locked model, on its own hold-out, meet the calibration bounds the
    plan sets for a candidate? A plan whose bounds the locked model already fails says so
    before any drift is looked at (issue 12)."""
    from clinval.evidence import format_interval

    by_metric = performance.set_index("metric")
    out = []
    slope_rule = plan.criteria.get("calibration_slope")
    if slope_rule and "calibration slope" in by_metric.index and by_metric.loc["calibration slope", "status"] == "ok":
        r = by_metric.loc["calibration slope"]
        low, high = (float(b) for b in slope_rule["bounds"])
        text = format_interval(r["value"], r["lower"], r["upper"], confidence=confidence)
        within = low <= r["value"] <= high
        covers = r["lower"] <= 1 <= r["upper"]
        if within and covers:
            out.append(f"The locked model's calibration slope on the hold-out, {text}, meets the plan's acceptance "
                       f"criterion (slope within {low:g} to {high:g} and its CI including 1).")
        else:
            why = []
            if not within:
                why.append(f"it lies outside the plan's bounds of {low:g} to {high:g}")
            if not covers:
                why.append("its CI excludes 1")
            spread = " (predicted risks too extreme)" if r["value"] < 1 else " (predicted risks too timid)"
            out.append(f"The locked model's calibration slope on the hold-out is {text}{spread}: "
                       f"{' and '.join(why)}, so the locked model itself fails the acceptance criterion the plan "
                       "sets for a candidate. A reviewer should know this before weighing any drift alert.")
    oe_rule = plan.criteria.get("observed_expected")
    if oe_rule and "O/E" in by_metric.index and by_metric.loc["O/E", "status"] == "ok":
        r = by_metric.loc["O/E"]
        target = float(oe_rule["includes"])
        text = format_interval(r["value"], r["lower"], r["upper"], confidence=confidence)
        verdict = "meets" if r["lower"] <= target <= r["upper"] else "fails"
        out.append(f"Observed/expected on the hold-out is {text}; it {verdict} the plan's criterion that the CI "
                   f"includes {target:g}.")
    return out or ["The plan sets no calibration criterion to check the locked model against."]
