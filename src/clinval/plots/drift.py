"""Plots for the drift analysis (notebook 02): heatmap, distributions, metrics over time,
control charts and label-free estimates. Each takes computed tables and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clinval.plots import PALETTE, colours
from clinval.vocabulary import REFERENCE, STATUS_OK

__all__ = ["category_shares", "control_charts", "drift_heatmap", "estimate_vs_realised", "metric_over_time"]


def drift_heatmap(features: pd.DataFrame, *, value: str = "psi") -> Figure:
    """Feature x period heatmap of an effect size (PSI by default); ``*`` marks features
    that drifted after FDR control, ``-`` a statistic that could not be computed."""
    table = features.pivot_table(index="feature", columns="period", values=value, aggfunc="first", sort=False)
    drifted = features.pivot_table(index="feature", columns="period", values="drifted", aggfunc="first", sort=False)
    fig = Figure(figsize=(1.0 + 0.9 * table.shape[1], 0.8 + 0.35 * table.shape[0]), layout="constrained")
    ax = fig.subplots()
    data = table.to_numpy(dtype=float)
    image = ax.imshow(np.nan_to_num(data, nan=0.0), cmap="Oranges", aspect="auto", vmin=0, vmax=max(0.1, float(np.nanmax(data)) if np.isfinite(data).any() else 0.1))
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            mark = "-" if np.isnan(data[i, j]) else ("*" if bool(drifted.iat[i, j]) else "")
            ax.text(j, i, f"{data[i, j]:.2f}{mark}" if not np.isnan(data[i, j]) else mark, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=value.upper() if value == "psi" else value, shrink=0.8)
    ax.set_title(f"{value.upper() if value == 'psi' else value} by feature and period (* drifted after FDR control)")
    return fig


def category_shares(shares: Mapping[str, pd.DataFrame]) -> Figure | None:
    """Share of each category (or bin) per period, one panel of stacked bars per feature;
    each table has ``period``, ``category``, ``share`` (:func:`clinval.monitor.feature_shares`).
    Returns None when there is nothing to draw."""
    if not shares:
        return None
    fig = Figure(figsize=(7.5, 2.4 * len(shares)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(shares), 1))
    for ax, (feature, table) in zip(axes, shares.items()):
        shares = table.assign(share=pd.to_numeric(table["share"]).fillna(0.0))  # hidden cells draw as empty
        wide = shares.pivot_table(index="period", columns="category", values="share", aggfunc="first", sort=False)
        bottom = np.zeros(len(wide))
        for colour, category in zip(colours(len(wide.columns)), wide.columns):
            ax.bar(wide.index.astype(str), wide[category], bottom=bottom, color=colour, label=str(category))
            bottom += wide[category].to_numpy()
        ax.set_ylabel("share")
        ax.set_ylim(0, 1)
        ax.set_title(f"{feature}: shares by period")
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    return fig


def metric_over_time(performance: pd.DataFrame, *, metrics: Sequence[str]) -> Figure:
    """Each metric per period with its 95% CI; the reference hold-out value and CI as a band."""
    fig = Figure(figsize=(3.2 * len(metrics), 2.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        rows = performance[performance["metric"] == metric]
        ref = rows[rows["period"] == REFERENCE]
        prod = rows[(rows["period"] != REFERENCE) & (rows["status"] == STATUS_OK)]
        if not ref.empty and ref.iloc[0]["status"] == STATUS_OK:
            r = ref.iloc[0]
            ax.axhspan(r["lower"], r["upper"], color="grey", alpha=0.15, label="reference 95% CI")
            ax.axhline(r["value"], color="grey", lw=1)
        ax.errorbar(prod["period"].astype(str), prod["value"], yerr=[prod["value"] - prod["lower"], prod["upper"] - prod["value"]],
                    fmt="o-", ms=4, capsize=2, color=PALETTE[0])
        if metric in ("O/E", "calibration slope"):
            ax.axhline(1.0, ls=":", color="black", lw=1)
        ax.set_title(metric)
        ax.tick_params(axis="x", labelrotation=45)
    axes[0].legend(loc="best", fontsize=7)
    return fig


def control_charts(chart_table: pd.DataFrame, *, metric: str) -> Figure:
    """CUSUM (upper and lower statistics) and EWMA of one metric, with their limits;
    signalling periods in red."""
    rows = chart_table[chart_table["metric"] == metric]
    fig = Figure(figsize=(7.5, 2.6), layout="constrained")
    ax_c, ax_e = fig.subplots(1, 2)
    cus = rows[rows["chart"] == "cusum"]
    ax_c.plot(cus["period"].astype(str), cus["upper"], "o-", ms=3, color=PALETTE[0], label="upper CUSUM")
    ax_c.plot(cus["period"].astype(str), -cus["lower"].abs(), "o-", ms=3, color=PALETTE[1], label="lower CUSUM")
    ax_c.axhline(float(cus["upper_limit"].iloc[0]), ls="--", color="black", lw=1)
    ax_c.axhline(-abs(float(cus["upper_limit"].iloc[0])), ls="--", color="black", lw=1)
    ax_c.set_title(f"{metric}: CUSUM (in sd units)")
    ax_c.legend(fontsize=7)
    ewm = rows[rows["chart"] == "ewma"]
    ax_e.plot(ewm["period"].astype(str), ewm["ewma"], "o-", ms=3, color=PALETTE[0], label="EWMA")
    ax_e.plot(ewm["period"].astype(str), ewm["value"], "x", color="grey", label="period value")
    ax_e.plot(ewm["period"].astype(str), ewm["upper_limit"], ls="--", color="black", lw=1)
    ax_e.plot(ewm["period"].astype(str), ewm["lower_limit"], ls="--", color="black", lw=1)
    ax_e.set_title(f"{metric}: EWMA")
    ax_e.legend(fontsize=7)
    for ax, part, col in ((ax_c, cus, "upper"), (ax_e, ewm, "ewma")):
        hits = part[part["signal"].astype(bool)]
        ax.plot(hits["period"].astype(str), hits[col], "o", color="#c00000", ms=6, fillstyle="none")
        ax.tick_params(axis="x", labelrotation=45)
    return fig


def estimate_vs_realised(estimated: pd.DataFrame, *, metrics: Sequence[str] = ("AUROC", "prevalence")) -> Figure:
    """Label-free (CBPE) estimates with their intervals against the realised values."""
    fig = Figure(figsize=(3.4 * len(metrics), 2.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        rows = estimated[estimated["metric"] == metric]
        x = rows["period"].astype(str)
        ax.fill_between(x, rows["lower"], rows["upper"], color=PALETTE[5], alpha=0.2, label="CBPE interval")
        ax.plot(x, rows["value"], "o--", ms=3, color=PALETTE[5], label="CBPE estimate")
        ax.plot(x, rows["realised"], "s-", ms=4, color=PALETTE[1], label="realised")
        ax.set_title(metric)
        ax.tick_params(axis="x", labelrotation=45)
    axes[0].legend(fontsize=7)
    return fig
