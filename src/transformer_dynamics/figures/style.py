"""What every figure shares: the matplotlib style, colours, axis helpers and :func:`save`.

Transition types have fixed colours (:data:`TYPE_COLORS`) across all figures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from ..sublayers import pre_attention_index  # noqa: E402


TYPE_COLORS = {"within": "#1f77b4", "cross": "#d62728", "skip": "#7f7f7f"}
TYPE_LABELS = {"within": "within-layer (attn→mlp)", "cross": "cross-layer (mlp→next attn)"}

plt.rcParams.update(
    {
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.labelsize": 8,
        "legend.fontsize": 7,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def save(fig: plt.Figure, png: str | Path, pdf: str | Path | None = None, dpi: int = 150) -> None:
    """Write ``fig`` to PNG (and PDF) and close it."""
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    if pdf is not None:
        fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)


def layer_ticks(ax: plt.Axes, n_sublayers: int, axis: str = "x", every: int | None = None) -> None:
    """Ticks at each layer's attn sublayer, labelled with the layer number."""
    n_layers = n_sublayers // 2
    step = every or max(1, n_layers // 8)
    shown = range(0, n_layers, step)
    pos = np.array([pre_attention_index(layer) for layer in shown])
    labels = [str(layer) for layer in shown]
    if axis == "x":
        ax.set_xticks(pos, labels)
    else:
        ax.set_yticks(pos, labels)


def depth_line(ax: plt.Axes, x: np.ndarray, y: np.ndarray, cmap: str = "viridis", lw: float = 2.0) -> LineCollection:
    """Draw the polyline (x, y) coloured by depth (first segment dark, last bright); return it."""
    pts = np.column_stack([x, y])
    lc = LineCollection(np.stack([pts[:-1], pts[1:]], axis=1), cmap=cmap, lw=lw, zorder=3)
    lc.set_array(np.linspace(0, 1, len(pts) - 1))
    ax.add_collection(lc)
    return lc


def log_if_wide(ax: plt.Axes, axis: str = "y") -> None:
    """Log scale on ``axis`` only when its data span a decade or more; a narrower log axis shows
    one major tick label or none."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if lo > 0 and hi / lo >= 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
