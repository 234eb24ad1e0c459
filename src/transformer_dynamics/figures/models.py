"""Models side by side on normalised depth (beyond the paper): ``results/comparison/``.

Reads only each model's tables (original condition).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .style import log_if_wide, plt


def figure_compare_models(tables: dict[str, dict[str, pd.DataFrame]]) -> plt.Figure:
    """Models side by side on normalised depth (0..1): correlation, MI, velocity, rotations, PCs."""
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.6), constrained_layout=True)
    colors = plt.get_cmap("tab10")
    for j, (m, t) in enumerate(tables.items()):
        c = colors(j % 10)
        u = t["units"]
        g = u.groupby("transition").agg(depth=("depth", "first"), r=("pearson_r", "median"), mi=("mi_nats", "mean"))
        axes[0].plot(g["depth"], g["r"], "-", color=c, lw=1.2, label=m)
        axes[1].plot(g["depth"], g["mi"], "-", color=c, lw=1.2, label=m)
        tr = t["transitions"]
        axes[2].plot(tr["depth"], tr["velocity_mean"] / tr["velocity_mean"].max(), "-", color=c, lw=1.2, label=m)
        r = t["rotations"]
        bins = np.linspace(0, max(1.0, float(r["abs_R"].max()), float(r.get("incr_null_abs_mean", r["abs_R"]).max())), 40)
        axes[3].hist(r["abs_R"], bins=bins, density=True, histtype="step", color=c, lw=1.5, label=f"{m}: units")
        if "incr_null_abs_mean" in r:
            axes[3].hist(r["incr_null_abs_mean"], bins=bins, density=True, histtype="step", color=c, ls=":",
                         lw=1.2, label=f"{m}: increment-shuffle null")
        n = t["n_pcs"]
        d = n["sublayer_index"] / max(1, n["sublayer_index"].max())
        axes[4].plot(d, n["n_pcs_90"], ".-", color=c, ms=3, lw=1, label=m)
        missing = n["n_pcs_90"].isna()
        if missing.any():
            # drawn along the top edge of the panel (y in axes coordinates)
            axes[4].plot(d[missing], np.full(missing.sum(), 0.97), "x", color=c, ms=3,
                         transform=axes[4].get_xaxis_transform(), clip_on=False,
                         label=f"{m}: not reached ({missing.sum()} sublayers)")
    axes[0].set_ylabel("median Pearson r (successive sublayers)")
    axes[1].set_ylabel("mean MI (nats)")
    axes[2].set_ylabel("velocity / its maximum")
    log_if_wide(axes[2])
    axes[3].set_ylabel("density over units")
    axes[3].set_xlabel("|R| (turns)")
    axes[4].set_ylabel("PCs for 90 % of a sublayer's variance")
    for ax in axes[[0, 1, 2, 4]]:
        ax.set_xlabel("normalised depth (0 = first sublayer, 1 = last)")
    for ax, title in zip(axes, ("correlation", "mutual information", "velocity",
                                "rotations (solid: units, dotted: increment null)",
                                "dimensionality (x: 90 % not reached)")):
        ax.set_title(title)
        if ax is not axes[3]:
            ax.legend(fontsize=6)
    # the rotations legend goes below its panel, not over the histograms
    axes[3].legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    fig.suptitle("Models side by side (original tokens)", fontsize=10)
    return fig
