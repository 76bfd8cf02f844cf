"""Gaps between a group and its reference group: intervals (MOVER), the flagging rule and
the sentence a reviewer reads for each gap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from clinval import intervals
from clinval.fairness_groups import _capitalise, _describe
from clinval.fairness_metrics import DIFFERENCE, EQUALIZED_ODDS, METRICS, METRIC_LABELS, RATIO, _EQUALIZED_ODDS_PARTS
from clinval.performance import OK

if TYPE_CHECKING:
    from clinval.fairness import FairnessSettings, _GroupResult


_NOT_COMPUTED = "not computed: {reason}"
_REASON_SUPPRESSED = "{who} is suppressed (small cell)"
_REASON_ABSENT = "the reference group {ref} has no patients here"
_REASON_NO_REFERENCE = "no known group to compare against"
_REASON_SINGLE_GROUP = "{attribute} has a single group ({group}) here, so there is nothing to compare"
_REASON_METRIC = "{metric} for {who}: {status}"
_REASON_NEGATIVE = "{metric} is negative for {who}, so a ratio is not meaningful"
_NOTE_SINGLE = "{where}{attribute} has a single group ({group}); no disparities can be computed for it."
_NOTE_REFERENCE = "{where}{attribute}: disparities are not computed because {reason}."
_DISPARITY_COLUMNS = ("attribute", "group", "reference_group", "metric", "measure", "value", "lower", "upper",
                      "tolerance", "flagged", "status", "sentence")


def _tolerance(measure: str, metric: str, settings: FairnessSettings) -> str:
    if measure == RATIO:
        return f"{settings.tolerance_ratio:g} to {1 / settings.tolerance_ratio:.4g}"
    if metric == EQUALIZED_ODDS:
        return f"<= {settings.tolerance_difference:g}"
    return f"±{settings.tolerance_difference:g}"


def _beyond(measure: str, metric: str, lower: float, upper: float, settings: FairnessSettings) -> bool:
    if math.isnan(lower) or math.isnan(upper):
        return False
    tol = settings.tolerance_difference
    if measure == RATIO:
        return upper < settings.tolerance_ratio or lower > 1 / settings.tolerance_ratio
    if metric == EQUALIZED_ODDS:
        return lower > tol
    return lower > tol or upper < -tol


def _too_wide(measure: str, metric: str, lower: float, upper: float, settings: FairnessSettings) -> bool:
    """The interval holds both "no gap" and a gap beyond the tolerance: the data cannot tell them apart."""
    tol = settings.tolerance_difference
    if measure == RATIO:
        return lower <= 1 <= upper and (lower < settings.tolerance_ratio or upper > 1 / settings.tolerance_ratio)
    if metric == EQUALIZED_ODDS:
        return lower <= 0 and upper > tol
    return lower <= 0 <= upper and (lower < -tol or upper > tol)


def _sentence(*, measure: str, metric: str, who: str, ref: str, value: float, lower: float, upper: float,
              status: str, flagged: bool, settings: FairnessSettings, where: str) -> str:
    name = METRIC_LABELS[metric]
    conf = f"{settings.confidence:.0%}"
    has_ci = not (math.isnan(lower) or math.isnan(upper))
    if metric == EQUALIZED_ODDS:
        ci = f" ({conf} CI {lower:.2f} to {upper:.2f})" if has_ci else ""
        body = (f"the {name} between {who} and {ref} (the larger of their sensitivity and false-positive-rate "
                f"gaps) is {value:.2f}{ci}")
    elif measure == DIFFERENCE:
        ci = f", {conf} CI {lower:+.2f} to {upper:+.2f}" if has_ci else ""
        direction = "higher" if value > 0 else "lower"
        body = (f"{name} for {who} is {abs(value):.2f} {direction} than for {ref} (difference {value:+.2f}{ci})"
                if value != 0 else f"{name} for {who} is the same as for {ref} (difference 0.00{ci})")
    else:
        ci = f" ({conf} CI {lower:.2f} to {upper:.2f})" if has_ci else ""
        body = f"{name} for {who} is {value:.2f} times that for {ref}{ci}"
    tol = settings.tolerance_difference
    if flagged:
        verdict = (f", outside the {settings.tolerance_ratio:g} to {1 / settings.tolerance_ratio:.3g} tolerance."
                   if measure == RATIO else f", beyond the {tol:.2f} tolerance.")
    elif not has_ci:
        verdict = f"; no interval could be computed ({status.removeprefix('insufficient data: ')}), so it is not flagged."
    elif metric not in settings.flag_metrics:
        verdict = f"; {name} is reported, not flagged."
    elif _too_wide(measure, metric, lower, upper, settings):
        verdict = ("; the interval holds both no gap and a gap beyond the tolerance, too wide to judge at this "
                   "group size, so it is not flagged.")
    elif measure == RATIO:
        verdict = (f"; the interval does not lie entirely outside {settings.tolerance_ratio:g} to "
                   f"{1 / settings.tolerance_ratio:.3g}, so it is not flagged.")
    else:
        verdict = f"; the interval does not lie entirely beyond the {tol:.2f} tolerance, so it is not flagged."
    return _capitalise(where + body + verdict)


def _row(attribute: str, group: str, reference: str | None, metric: str, measure: str, tolerance: str,
         status: str, sentence: str, value: float = math.nan, lower: float = math.nan,
         upper: float = math.nan, flagged: bool = False) -> dict:
    return {"attribute": attribute, "group": group, "reference_group": reference, "metric": metric,
            "measure": measure, "value": value, "lower": lower, "upper": upper, "tolerance": tolerance,
            "flagged": flagged, "status": status, "sentence": sentence}


def _not_computed(attribute: str, group: str, reference: str | None, metric: str, measure: str, reason: str,
                  settings: FairnessSettings, where: str) -> dict:
    what = METRIC_LABELS.get(metric, "disparities")
    ref = "the reference group" if reference is None else _describe(attribute, reference)
    if measure:
        sentence = f"{where}the {measure} in {what} between {_describe(attribute, group)} and {ref} was not computed: {reason}."
    else:
        sentence = f"{where}{what} were not computed for {attribute.replace('_', ' ')}: {reason}."
    return _row(attribute, group, reference, metric, measure, _tolerance(measure, metric, settings) if measure else "",
                _NOT_COMPUTED.format(reason=reason), _capitalise(sentence))


def _triple(res: _GroupResult, metric: str) -> tuple[float, float, float]:
    return (res.value[metric], *res.interval[metric])


def _largest_gap(group: _GroupResult, reference: _GroupResult, confidence: float) -> tuple[float, float]:
    """Interval of the equalized-odds difference: Newcombe intervals of the sensitivity and
    false-positive-rate gaps at the Bonferroni level, combined by :func:`intervals.largest_gap_interval`."""
    level = 1 - (1 - confidence) / len(_EQUALIZED_ODDS_PARTS)
    gaps = []
    for part in _EQUALIZED_ODDS_PARTS:
        triples = []
        for res in (group, reference):
            count, total = res.counts[part]
            triples.append((count / total, *intervals.rate_interval(count, total, confidence=level)))
        gaps.append((triples[0][0] - triples[1][0], *intervals.difference_interval(*triples)))
    return intervals.largest_gap_interval(gaps)


def _disparities(*, attribute: str, order: list[str], results: Mapping[str, _GroupResult], reference: str | None,
                 settings: FairnessSettings, where: str) -> tuple[pd.DataFrame, list[dict]]:
    rows, notes = [], []
    if len(order) == 1:
        reason = _REASON_SINGLE_GROUP.format(attribute=attribute.replace("_", " "), group=order[0])
        rows.append(_not_computed(attribute, order[0], order[0], "all", "", reason, settings, where))
        notes.append({"attribute": attribute, "note": _capitalise(_NOTE_SINGLE.format(
            where=where, attribute=attribute.replace("_", " "), group=order[0]))})
        return pd.DataFrame(rows, columns=list(_DISPARITY_COLUMNS)), notes
    if reference is None:
        whole = _REASON_NO_REFERENCE
    elif reference not in results:
        whole = _REASON_ABSENT.format(ref=_describe(attribute, reference))
    elif results[reference].hidden:
        whole = _REASON_SUPPRESSED.format(who=f"the reference group {_describe(attribute, reference)}")
    else:
        whole = None
    if whole is not None:
        notes.append({"attribute": attribute, "note": _capitalise(_NOTE_REFERENCE.format(
            where=where, attribute=attribute.replace("_", " "), reason=whole))})
    ref_text = _describe(attribute, reference) if reference is not None else ""
    for g in order:
        if g == reference:
            continue
        who = _describe(attribute, g)
        reason_group = whole or (_REASON_SUPPRESSED.format(who=who) if results[g].hidden else None)
        for metric in [*METRICS, EQUALIZED_ODDS]:
            measures = (DIFFERENCE,) if metric == EQUALIZED_ODDS else (DIFFERENCE, RATIO)
            parts = _EQUALIZED_ODDS_PARTS if metric == EQUALIZED_ODDS else (metric,)
            reason = reason_group
            if reason is None:
                for part in parts:
                    for name, res in ((who, results[g]), (ref_text, results[reference])):
                        if reason is None and math.isnan(res.value[part]):
                            reason = _REASON_METRIC.format(metric=METRIC_LABELS[part], who=name,
                                                           status=res.status[part].removeprefix("insufficient data: "))
            for measure in measures:
                if reason is not None:
                    rows.append(_not_computed(attribute, g, reference, metric, measure, reason, settings, where))
                    continue
                rg, rr = results[g], results[reference]
                if metric == EQUALIZED_ODDS:
                    value = max(abs(rg.value[p] - rr.value[p]) for p in parts)
                    lower, upper = _largest_gap(rg, rr, settings.confidence)
                elif measure == DIFFERENCE:
                    value = rg.value[metric] - rr.value[metric]
                    lower, upper = intervals.difference_interval(_triple(rg, metric), _triple(rr, metric))
                else:
                    negative = next((name for name, res in ((who, rg), (ref_text, rr)) if res.interval[metric][0] < 0), None)
                    if rr.value[metric] == 0 or negative is not None:
                        why = (f"{METRIC_LABELS[metric]} for {ref_text} is 0, so a ratio is undefined" if negative is None
                               else _REASON_NEGATIVE.format(metric=METRIC_LABELS[metric], who=negative))
                        rows.append(_not_computed(attribute, g, reference, metric, measure, why, settings, where))
                        continue
                    value = rg.value[metric] / rr.value[metric]
                    lower, upper = intervals.ratio_interval(_triple(rg, metric), _triple(rr, metric))
                flagged = metric in settings.flag_metrics and _beyond(measure, metric, lower, upper, settings)
                sentence = _sentence(measure=measure, metric=metric, who=who, ref=ref_text, value=value, lower=lower,
                                     upper=upper, status=OK, flagged=flagged, settings=settings, where=where)
                rows.append(_row(attribute, g, reference, metric, measure, _tolerance(measure, metric, settings),
                                 OK, sentence, float(value), lower, upper, flagged))
    return pd.DataFrame(rows, columns=list(_DISPARITY_COLUMNS)), notes
