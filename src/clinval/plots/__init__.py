"""Plots for evidence records; each function takes computed results and returns a matplotlib Figure.

Computing lives in the other modules; these functions only draw. None of them draws an
individual patient's value: histograms use bins holding at least ``min_cell_size``
patients, and calibration points rest on at least as many.

Call :func:`use_record_style` once in a notebook's import cell: it fixes fonts, sizes
and the metadata matplotlib writes, so the same results give byte-identical images.
"""

from __future__ import annotations

import matplotlib

__all__ = ["use_record_style", "PALETTE", "colours"]

PALETTE = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000", "#2e75b6", "#a50021")
"""Colour-blind-friendly enough, and distinct in greyscale print."""


def colours(n: int) -> list:
    """``n`` distinct colours: the palette while it lasts, else evenly spaced on viridis
    (so a feature with 13 wards never shows two wards in one colour)."""
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    from matplotlib import colormaps

    return [colormaps["viridis"](k / (n - 1)) for k in range(n)]


def use_record_style() -> None:
    """Fixed style and deterministic output for figures in evidence records."""
    matplotlib.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "figure.figsize": (7.5, 3.6),
            "font.family": "DejaVu Sans",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "svg.hashsalt": "clinval",
            "path.simplify": True,
        }
    )
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
        shell.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
        shell.run_line_magic("config", "InlineBackend.print_figure_kwargs = {'bbox_inches': 'tight', 'metadata': {'Software': None}}")
