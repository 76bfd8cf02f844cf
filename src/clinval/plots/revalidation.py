"""Plots for revalidation (notebook 04): calibration of each candidate against the locked model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from clinval.plots import PALETTE

__all__ = ["calibration_comparison"]


def calibration_comparison(evaluations: Sequence) -> Figure | None:
    """One panel per candidate: binned observed rate against mean predicted risk (Wilson
    CIs) for the locked model and the candidate on the sequestered periods. None if there
    are no candidates."""
    if not evaluations:
        return None
    fig = Figure(figsize=(3.8 * len(evaluations), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(evaluations)))
    for ax, evaluation in zip(axes, evaluations):
        table = evaluation.calibration
        top = float(max(table["upper"].max(), table["mean_predicted"].max())) * 1.05
        ax.plot([0, top], [0, top], ls="--", color="grey", lw=1)
        for k, (name, rows) in enumerate(table.groupby("model", sort=False)):
            ax.errorbar(rows["mean_predicted"], rows["observed"],
                        yerr=[rows["observed"] - rows["lower"], rows["upper"] - rows["observed"]],
                        fmt="o-", ms=4, capsize=2, color=PALETTE[k], label=name)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("mean predicted risk")
        ax.set_ylabel("observed event rate")
        ax.set_title(f"sequestered {', '.join(evaluation.periods)}")
        ax.legend(fontsize=7, loc="upper left")
    return fig
