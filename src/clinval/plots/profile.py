"""Plots for the reference profile (notebook 01): feature distributions, ROC, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clinval.plots import PALETTE

__all__ = ["calibration_plot", "feature_distributions", "roc_plot"]


def _grid(n_panels: int, ncols: int = 3, height: float = 2.2) -> tuple[Figure, np.ndarray]:
    nrows = int(np.ceil(n_panels / ncols))
    fig = Figure(figsize=(3.2 * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def feature_distributions(frequencies: pd.DataFrame, numeric: dict[str, pd.DataFrame]) -> Figure:
    """One panel per feature.

    Parameters
    ----------
    frequencies
        :func:`clinval.data.category_frequencies` output (suppressed shares are ``None``
        and drawn as an empty bar labelled with the suppressed count).
    numeric
        Feature name -> histogram table with ``left``, ``right``, ``density`` columns
        (:func:`clinval.data.numeric_histogram`), each bin holding enough patients.
    """
    features = list(numeric) + list(dict.fromkeys(frequencies["feature"]))
    fig, axes = _grid(len(features))
    for ax, feature in zip(axes, features):
        if feature in numeric:
            hist = numeric[feature]
            ax.bar(hist["left"], hist["density"], width=hist["right"] - hist["left"], align="edge",
                   color=PALETTE[0], edgecolor="white")
            ax.set_ylabel("density")
        else:
            rows = frequencies[frequencies["feature"] == feature]
            share = rows["share"].astype(float).fillna(0.0)
            bars = ax.bar(rows["category"].astype(str), share, color=PALETTE[1])
            for bar, label, hidden in zip(bars, rows["n"], rows["share"].isna()):
                if hidden:
                    ax.annotate(label, (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom", fontsize=8)
            ax.set_ylabel("share")
        ax.set_title(feature)
    return fig


def roc_plot(roc: pd.DataFrame, *, label: str) -> Figure:
    """ROC curve from a thresholds table (``fpr``, ``tpr`` at risk quantiles)."""
    fig = Figure(figsize=(3.6, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(roc["fpr"], roc["tpr"], marker="o", ms=3, color=PALETTE[0], label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def calibration_plot(curve: pd.DataFrame, *, label: str) -> Figure:
    """Observed outcome rate (with Wilson CI) against mean predicted risk per bin."""
    fig = Figure(figsize=(3.6, 3.4), layout="constrained")
    ax = fig.subplots()
    top = float(max(curve["upper"].max(), curve["mean_predicted"].max())) * 1.05
    ax.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="ideal")
    ax.errorbar(curve["mean_predicted"], curve["observed"],
                yerr=[curve["observed"] - curve["lower"], curve["upper"] - curve["observed"]],
                fmt="o", ms=4, color=PALETTE[1], capsize=2, label=label)
    ax.set_xlabel("mean predicted risk")
    ax.set_ylabel("observed event rate")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.legend(loc="upper left", fontsize=8)
    return fig
