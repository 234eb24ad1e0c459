"""Figure 2: unit phase portraits and rotation counts vs the shuffle null (§2.6, Fig 2).

Reads only the rotation tables (``rotations/<condition>*.parquet``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection

from .style import plt


def _portrait(ax: plt.Axes, a: np.ndarray, title: str) -> None:
    g = np.gradient(a)
    x, y = a - a[0], g - g[0]
    pts = np.column_stack([x, y])
    segs = np.stack([pts[:-1], pts[1:]], axis=1)
    lc = LineCollection(segs, cmap="viridis", lw=1.3)
    lc.set_array(np.linspace(0, 1, len(segs)))
    ax.add_collection(lc)
    ax.scatter(x[0], y[0], s=12, color="k", zorder=3, label="first sublayer")
    ax.autoscale()
    ax.set_xlabel("a − a₀")
    ax.set_ylabel("da/dl − g₀")
    ax.set_title(title)


def figure2(
    rot: pd.DataFrame, traj: pd.DataFrame, null_sample: pd.DataFrame, title: str,
    example_units: Sequence[int] = (),
) -> plt.Figure:
    """Figure 2: example phase portraits coloured by depth, and observed R vs the null."""
    order = rot.sort_values("abs_R")
    picks = list(order["unit"].iloc[-2:][::-1]) + list(order["unit"].iloc[:1]) + [u for u in example_units if u in set(rot["unit"])]
    picks = list(dict.fromkeys(picks))[:5]
    T = traj.pivot(index="unit", columns="sublayer_index", values="a_mean")
    ncol = len(picks) + 1
    fig = plt.figure(figsize=(3.1 * ncol, 6.6), constrained_layout=True)
    gs = fig.add_gridspec(2, ncol)
    axes = [fig.add_subplot(gs[0, j]) for j in range(ncol)]
    Rby = rot.set_index("unit")["R"]
    for j, (ax, u) in enumerate(zip(axes, picks)):
        _portrait(ax, T.loc[u].to_numpy(), f"{'A  ' if j == 0 else ''}unit {u}: R = {Rby[u]:.2f}")
    sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes[: len(picks)], label="depth (sublayer / 2L)", shrink=0.8)
    ax = axes[-1]
    lo = min(rot["R"].min(), null_sample["R_null"].min())
    hi = max(rot["R"].max(), null_sample["R_null"].max())
    bins = np.linspace(lo, hi, 50)
    null = rot["null"].iloc[0]
    ax.hist(null_sample["R_null"], bins=bins, density=True, color="#7f7f7f", alpha=0.6,
            label=f"null: {null} shuffles")
    ax.hist(rot["R"], bins=bins, density=True, color="#2ca02c", alpha=0.6, label="observed units")
    ax.axvline(rot["R"].mean(), color="#2ca02c", lw=1.5, ls="--", label="observed mean")
    ax.axvline(null_sample["R_null"].mean(), color="#555555", lw=1.5, ls="--", label="null mean")
    ax.set_xlabel("rotations R (turns; < 0 = clockwise)")
    ax.set_ylabel("density over units")
    # below the panel: inside it, any corner can sit on a histogram or a mean's dashed line
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=6, ncol=2, frameon=False)
    # the histogram is signed R, so the title states signed means (|R| in brackets)
    ax.set_title(f"B  mean R = {rot['R'].mean():.2f} vs null {rot['null_mean'].mean():.2f}\n"
                 f"(mean |R| {rot['abs_R'].mean():.2f} vs {rot['null_abs_mean'].mean():.2f})")

    # C: every unit's R against its own shuffle control (the paper's panel C) and the
    # stronger nulls that keep the signal's roughness
    ax = fig.add_subplot(gs[1, :])
    r = rot.sort_values("R").reset_index(drop=True)
    x = np.arange(len(r))
    ax.fill_between(x, r["null_mean"] - r["null_sd"], r["null_mean"] + r["null_sd"], color="#7f7f7f", alpha=0.3,
                    lw=0, label=f"{null}-shuffle null of the unit (mean ± sd; paper's control)")
    ax.plot(x, r["null_mean"], color="#555555", lw=0.8)
    stronger = {"incr": ("#ff7f0e", "increment-shuffle null (re-integrated random walk)"),
                "act": ("#9467bd", "activation-shuffle null (permute a, recompute gradient)")}
    for key, (color, label) in stronger.items():
        if f"{key}_null_mean" in r:
            ax.plot(x, r[f"{key}_null_mean"], ".", ms=1.5, color=color, label=f"{label}, mean")
    ax.plot(x, r["R"], ".", ms=2.5, color="#2ca02c", label="observed R of the unit")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlim(-1, len(r))
    ax.set_xlabel(f"unit (sorted by observed R; {len(r)} units)")
    ax.set_ylabel("rotations R (turns)")
    # beside the panel, not over the null band or the units' points
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=4, ncol=1, frameon=False)
    ax.set_title("C  rotations of every unit and its controls")
    fig.suptitle(title, fontsize=10)
    return fig
