"""Plots for the fairness audit (notebook 03): group forest plots, gaps over time, calibration by group.

Each function takes results computed by :mod:`clinval.fairness` (or, for calibration,
the prediction log), returns a :class:`matplotlib.figure.Figure` built without pyplot
(safe under the Agg backend, never shown), and draws aggregates only: suppressed groups
appear as a label, never as a point, and every calibration point rests on at least
``min_cell_size`` patients.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from clinval import disclosure
from clinval.fairness import DIFFERENCE, METRIC_LABELS, OVERALL_GROUP, RATIO, UNKNOWN, FairnessAudit
from clinval.plots import PALETTE
from clinval.privacy import DEFAULT_MIN_CELL_SIZE

__all__ = ["calibration_by_group", "forest_plot", "gap_heatmap"]

_ERR_PERIODS = "the group table holds periods {periods}; pass period= to choose one."
_ERR_METRIC = "unknown metric {metric!r}; choose from {known}."
_ERR_MEASURE = "measure must be {known}; got {measure!r}."
_ERR_NO_ROWS = "no rows for metric {metric!r} (attribute {attribute!r}) in the table."
_ERR_COLUMNS = "the prediction log needs columns {missing}."

_IDEAL_ONE = ("observed_expected", "calibration_slope")  # metrics whose ideal value is 1


def _check_metric(metric: str) -> None:
    if metric not in METRIC_LABELS:
        raise ValueError(_ERR_METRIC.format(metric=metric, known=list(METRIC_LABELS)))


def forest_plot(group_table: pd.DataFrame, *, metric: str, period: str | None = None) -> Figure:
    """One metric per group with its confidence interval (a forest plot).

    Parameters
    ----------
    group_table
        :func:`clinval.fairness.group_metrics` output, or ``FairnessAudit.groups``
        (then ``period`` chooses the period); several attributes are drawn one below
        the other.
    metric
        A metric name from :data:`clinval.fairness.METRICS`.
    period
        The period to draw, when the table holds several.

    Returns
    -------
    matplotlib.figure.Figure
        Points with horizontal interval bars; a dashed line at the whole period's value
        (and a dotted line at 1 for O/E and calibration slope). Suppressed groups and
        groups without a value are listed with the reason instead of a point.
    """
    _check_metric(metric)
    table = group_table
    if "period" in table.columns:
        periods = list(dict.fromkeys(table["period"]))
        if period is None and len(periods) > 1:
            raise ValueError(_ERR_PERIODS.format(periods=periods))
        table = table[table["period"] == (period if period is not None else periods[0])]
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ValueError(_ERR_NO_ROWS.format(metric=metric, attribute=list(table["attribute"].unique())))
    overall = rows[rows["group"] == OVERALL_GROUP].head(1)
    groups = rows[rows["group"] != OVERALL_GROUP]
    entries: list[tuple[str, pd.Series | None]] = []
    if not overall.empty:
        entries.append((OVERALL_GROUP, overall.iloc[0]))
    attributes = list(dict.fromkeys(groups["attribute"]))
    for attribute in attributes:
        if len(attributes) > 1 or not overall.empty:
            entries.append((attribute.replace("_", " "), None))  # a section header
        for _, row in groups[groups["attribute"] == attribute].iterrows():
            entries.append((str(row["group"]), row))

    fig = Figure(figsize=(6.4, 1.2 + 0.28 * len(entries)), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(entries))[::-1]
    labels = []
    finite = rows[["value", "lower", "upper"]].astype(float).to_numpy().ravel()
    finite = finite[np.isfinite(finite)]
    left = float(finite.min()) if finite.size else 0.0
    for y, (name, row) in zip(ys, entries):
        if row is None:
            labels.append(name)
            continue
        n = row["n"]
        labels.append(f"{name}  (n {n})" if isinstance(n, str) else f"{name}  (n={n})")
        value, lower, upper = (float(row[c]) for c in ("value", "lower", "upper"))
        if bool(row["suppressed"]):
            ax.annotate("suppressed (small cell)", (left, y), va="center", fontsize=8, color="grey")
            continue
        if math.isnan(value):
            ax.annotate(str(row["status"]).split(":")[0], (left, y), va="center", fontsize=8, color="grey")
            continue
        colour = PALETTE[0] if name != OVERALL_GROUP else "black"
        if math.isnan(lower):
            no_interval = "no interval (too few events)" not in ax.get_legend_handles_labels()[1]
            ax.plot([value], [y], "o", color=colour, mfc="white",
                    label="no interval (too few events)" if no_interval else None)
        else:
            ax.errorbar([value], [y], xerr=[[value - lower], [upper - value]], fmt="o", color=colour, capsize=3, ms=5)
    if not overall.empty and np.isfinite(float(overall.iloc[0]["value"])):
        ax.axvline(float(overall.iloc[0]["value"]), ls="--", lw=1, color="grey", label=OVERALL_GROUP)
    if metric in _IDEAL_ONE:
        ax.axvline(1.0, ls=":", lw=1, color="black", label="ideal (1)")
    ax.set_yticks(ys, labels)
    for tick, (_, row) in zip(ax.get_yticklabels(), entries):
        if row is None:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.7, len(entries) - 0.3)
    ax.set_xlabel(f"{METRIC_LABELS[metric]} (point and confidence interval)")
    where = f", {period}" if period is not None else ""
    ax.set_title(f"{METRIC_LABELS[metric]} by group{where}", loc="left")
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def gap_heatmap(audit: FairnessAudit, *, metric: str, attribute: str, measure: str = DIFFERENCE) -> Figure:
    """Each group's gap to the reference group (rows) in each period (columns).

    Parameters
    ----------
    audit
        :func:`clinval.fairness.audit_over_time` output.
    metric
        A metric name, or ``"equalized_odds"``.
    attribute
        A group column of the audit, e.g. ``"sex"`` or ``"sex × age_band"``.
    measure
        ``"difference"`` (group - reference) or ``"ratio"`` (group / reference).

    Returns
    -------
    matplotlib.figure.Figure
        Colour = the gap (diverging around no gap); each cell shows the value, with
        ``*`` when the disparity is flagged (its interval lies beyond the tolerance).
        Grey cells were not computed (suppressed group, insufficient data).
    """
    _check_metric(metric)
    if measure not in (DIFFERENCE, RATIO):
        raise ValueError(_ERR_MEASURE.format(known=[DIFFERENCE, RATIO], measure=measure))
    d = audit.disparities
    rows = d[(d["attribute"] == attribute) & (d["metric"] == metric) & (d["measure"] == measure)]
    reference = audit.reference_groups.get(attribute)
    fig = Figure(figsize=(max(5.5, 1.6 + 0.9 * len(audit.periods)), 1.8 + 0.4 * max(1, rows["group"].nunique())),
                 layout="constrained")
    ax = fig.subplots()
    title = f"{METRIC_LABELS[metric]}: {measure} to {attribute.replace('_', ' ')} {reference}"
    ax.set_title(title, loc="left")
    if rows.empty:
        reasons = d[(d["attribute"] == attribute)]["sentence"]
        ax.text(0.5, 0.5, reasons.iloc[0] if len(reasons) else _ERR_NO_ROWS.format(metric=metric, attribute=attribute),
                ha="center", va="center", wrap=True, fontsize=8, transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    groups = list(dict.fromkeys(rows["group"]))
    periods = list(audit.periods)
    values = np.full((len(groups), len(periods)), np.nan)
    text = np.full(values.shape, "", dtype=object)
    for r in rows.itertuples(index=False):
        i, j = groups.index(r.group), periods.index(r.period)
        if r.status == "ok" or not math.isnan(r.value):
            values[i, j] = r.value
            text[i, j] = f"{r.value:.2f}" + ("*" if r.flagged else "")
        else:
            text[i, j] = "supp." if "suppressed" in r.status else "n/a"
    centre = 1.0 if measure == RATIO else 0.0
    finite = values[np.isfinite(values)]
    spread = max(float(np.abs(finite - centre).max()) if finite.size else 0.0,
                 audit.settings.tolerance_difference if measure == DIFFERENCE else 1 / audit.settings.tolerance_ratio - 1,
                 1e-6)
    norm = TwoSlopeNorm(vcenter=centre, vmin=centre - spread, vmax=centre + spread)
    cmap = colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(groups)):
        for j in range(len(periods)):
            dark = np.isfinite(values[i, j]) and abs(float(norm(values[i, j])) - 0.5) > 0.3
            ax.text(j, i, text[i, j], ha="center", va="center", fontsize=8, color="white" if dark else "black",
                    fontweight="bold" if text[i, j].endswith("*") else "normal")
    ax.set_xticks(range(len(periods)), periods)
    ax.set_yticks(range(len(groups)), groups)
    ax.grid(False)
    fig.colorbar(image, ax=ax, shrink=0.8, label=measure)
    tol = rows["tolerance"].iloc[0]
    conf = f"{audit.settings.confidence:.0%}"
    ax.set_xlabel(f"period\n* flagged: the {conf} CI lies beyond the tolerance ({tol}). Grey: not computed.",
                  fontsize=8)
    return fig


def _groups_in_order(values: pd.Series) -> tuple[pd.Series, list[str]]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        text = values.astype(object).where(values.notna(), UNKNOWN).map(str)
        present = set(text)
        return text, [str(c) for c in values.cat.categories if str(c) in present]
    text = values.astype(object).where(values.notna(), UNKNOWN).map(str)
    present = sorted(set(text) - {UNKNOWN})
    return text, present + ([UNKNOWN] if UNKNOWN in set(text) else [])


def calibration_by_group(log: pd.DataFrame, *, attribute: str, n_bins: int = 5,
                         min_cell_size: int = DEFAULT_MIN_CELL_SIZE, confidence: float = 0.95,
                         suppressed: Collection[str] = ()) -> Figure:
    """Observed outcome rate against mean predicted risk, one curve per group.

    Parameters
    ----------
    log
        Prediction log rows to draw (one period), with ``label``, ``predicted_risk``
        and the group column ``attribute``; unlabelled rows are ignored.
    attribute
        Group column, e.g. ``"sex"`` or ``"age_band"``.
    n_bins
        Largest number of risk bins per group (quantile bins of predicted risk).
    min_cell_size
        No point rests on fewer patients; groups with fewer labelled patients are not drawn.
    confidence
        Level of the Wilson interval of each point.
    suppressed
        Groups suppressed in the published tables (e.g. ``table.loc[table.suppressed,
        "group"]``); they are not drawn either.

    Returns
    -------
    matplotlib.figure.Figure
        Binned points with Wilson intervals joined by lines; the diagonal is perfect
        calibration. A footnote names groups not drawn.
    """
    missing = [c for c in ("label", "predicted_risk", attribute) if c not in log.columns]
    if missing:
        raise ValueError(_ERR_COLUMNS.format(missing=missing))
    groups, order = _groups_in_order(log[attribute])
    y = pd.to_numeric(log["label"], errors="coerce").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    risk = pd.to_numeric(log["predicted_risk"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    usable = ~np.isnan(y) & ~np.isnan(risk)
    hidden = {str(g) for g in suppressed}
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    skipped, top = [], 0.0
    drawn = 0
    for g in order:
        sel = usable & (groups == g).to_numpy()
        if g in hidden or sel.sum() < min_cell_size:
            skipped.append(g)
            continue
        # every point holds min_cell_size events and non-events, like every published rate
        curve = disclosure.calibration_table(y[sel], risk[sel], n_bins=n_bins, confidence=confidence,
                                             min_cell_size=min_cell_size)
        if curve.empty:
            skipped.append(g)
            continue
        colour = PALETTE[drawn % len(PALETTE)]
        drawn += 1
        observed = curve["observed"].to_numpy(dtype=float)
        ax.errorbar(curve["mean_predicted"].to_numpy(dtype=float), observed,
                    yerr=np.vstack([observed - curve["lower"].to_numpy(dtype=float),
                                    curve["upper"].to_numpy(dtype=float) - observed]),
                    fmt="-o", ms=3.5, lw=1, capsize=2, color=colour, label=g)
        top = max(top, float(curve["upper"].max()), float(curve["mean_predicted"].max()))
    top = min(1.0, top * 1.05) if top > 0 else 1.0
    ax.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="ideal")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    footnote = (f"\nNot drawn (fewer than {min_cell_size} patients with or without the outcome, or suppressed): " + ", ".join(skipped)
                if skipped else "")
    ax.set_xlabel("mean predicted risk" + footnote)
    ax.set_ylabel("observed event rate")
    ax.set_title(f"Calibration by {attribute.replace('_', ' ')}", loc="left")
    ax.legend(loc="upper left", fontsize=8)
    return fig
