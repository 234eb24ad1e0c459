"""Figure 1: residual-stream statistics from the statistics tables (§2.2-2.5, Fig 1B-H).

Reads only tables (``stats/<condition>/*.parquet``), never the activation store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection

from .style import TYPE_COLORS, TYPE_LABELS, layer_ticks, plt


def _by_type(ax: plt.Axes, tr: pd.DataFrame, prefix: str, ylabel: str) -> None:
    for t in ("within", "cross"):
        d = tr[tr["type"] == t]
        x = d["src"].to_numpy()
        ax.fill_between(x, d[f"{prefix}_q25"], d[f"{prefix}_q75"], color=TYPE_COLORS[t], alpha=0.2, lw=0)
        ax.plot(x, d[f"{prefix}_mean"], "o-", ms=2.5, lw=1, color=TYPE_COLORS[t], label=TYPE_LABELS[t])
    ax.set_ylabel(ylabel)
    ax.set_xlabel("layer of the transition's source")
    layer_ticks(ax, int(tr["dst"].max()) + 1)


def figure1(
    units: pd.DataFrame,
    means: pd.DataFrame,
    rdist: pd.DataFrame,
    transitions: pd.DataFrame,
    sublayers: pd.DataFrame,
    title: str,
) -> plt.Figure:
    """Figure 1B-H: means, correlation, its per-unit distribution, cosine, velocity, magnitude, MI."""
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.6), constrained_layout=True)
    S = int(means["sublayer_index"].max()) + 1

    # B: mean activation heat map, units sorted by their mean at the last sublayer
    ax = axes[0, 0]
    M = means.pivot(index="sublayer_index", columns="unit", values="mean").to_numpy()
    order = np.argsort(M[-1])
    lim = np.nanpercentile(np.abs(M), 99)
    im = ax.imshow(M[:, order], aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xlabel("unit (sorted by mean at last sublayer)")
    ax.set_ylabel("layer")
    layer_ticks(ax, S, "y")
    fig.colorbar(im, ax=ax, label="mean activation", shrink=0.8)
    ax.set_title("B  mean activation per unit and sublayer")

    # C: Pearson r per unit per transition, by type
    ax = axes[0, 1]
    for t in ("within", "cross"):
        d = units[units["type"] == t]
        ax.scatter(d["transition"], d["pearson_r"], s=0.5, alpha=0.08, color=TYPE_COLORS[t], rasterized=True)
        med = d.groupby("transition")["pearson_r"].median()
        ax.plot(med.index, med.to_numpy(), "o-", ms=2.5, lw=1, color=TYPE_COLORS[t], label=f"{TYPE_LABELS[t]}, median")
    ax.set_xlabel("transition (source layer)")
    layer_ticks(ax, S)
    ax.set_ylabel("Pearson r (successive sublayers)")
    ax.set_ylim(-0.2, 1.02)
    ax.legend(loc="lower right", markerscale=3)
    ax.set_title("C  correlation per unit and transition")

    # D: per-unit distribution of correlations
    ax = axes[0, 2]
    D = rdist.assign(c=(rdist["bin_lo"] + rdist["bin_hi"]) / 2).pivot(index="unit", columns="c", values="density")
    xs = D.columns.to_numpy()
    # A unit has only 2L-1 correlations: its raw histogram is a row of lone spikes (zig-zags
    # at low r). Each unit's density is smoothed over bins with a Gaussian of sd 1.5 bins
    # (area kept), much as a kernel density of its correlations would show.
    k = np.arange(-4, 5)
    kern = np.exp(-0.5 * (k / 1.5) ** 2)
    kern /= kern.sum()
    dens = np.nan_to_num(D.to_numpy())
    # reflected at the ends of the range (|r| <= 1), so no mass leaks past r = 1
    smooth = np.apply_along_axis(lambda row: np.convolve(np.pad(row, 4, mode="symmetric"), kern, mode="valid"), 1, dens)
    segs = [np.column_stack([xs, row]) for row in smooth]
    ax.add_collection(LineCollection(segs, colors="k", alpha=0.03, lw=0.5, rasterized=True))
    bw = float(np.median(rdist["bin_hi"] - rdist["bin_lo"]))
    ax.plot(xs, smooth.mean(axis=0), color="#ff7f0e", lw=2, label="mean over units")
    ax.plot([], [], color="k", lw=0.5, label=f"one unit (smoothed, sd {1.5 * bw:.3g} in r)")
    D = pd.DataFrame(smooth)
    # from the lowest r any unit has (negative r included), not from 0
    has = (dens > 0).any(axis=0)
    r_min = float(rdist.loc[rdist["density"] > 0, "bin_lo"].min()) if has.any() else 0.0
    ax.set_xlim(min(0.0, np.floor(r_min * 10) / 10), 1)
    top = np.nanpercentile(D.to_numpy(), 99.5) * 1.05 + 1e-9
    ax.set_ylim(0, top)
    clipped = int((smooth.max(axis=1) > top).sum())
    if clipped:  # the few units whose peak is cut off by the axis: say so, at the top edge
        ax.text(0.02, 0.97, f"{clipped} unit(s) peak above the axis (max {smooth.max():.3g})",
                transform=ax.transAxes, ha="left", va="top", fontsize=6, color="0.3")
    ax.set_xlabel("Pearson r")
    ax.set_ylabel("density over a unit's transitions")
    ax.legend(loc="best")  # the density sits at high r; with negative r shown, upper left is not always free
    ax.set_title("D  per-unit distribution of correlations")

    # E: cosine similarity
    ax = axes[0, 3]
    _by_type(ax, transitions, "cosine", "cosine similarity (mean, IQR)")
    ax.set_title("E  cosine similarity of successive RS vectors")

    # F: velocity
    ax = axes[1, 0]
    _by_type(ax, transitions, "velocity", "velocity ||h(l+1) - h(l)|| (mean, IQR)")
    ax.set_yscale("log")
    ax.set_title("F  velocity")

    # F': magnitude per sublayer
    ax = axes[1, 1]
    for k, c in (("attn", TYPE_COLORS["within"]), ("mlp", TYPE_COLORS["cross"])):
        d = sublayers[sublayers["kind"] == k]
        ax.fill_between(d["sublayer_index"], d["norm_q25"], d["norm_q75"], color=c, alpha=0.2, lw=0)
        ax.plot(d["sublayer_index"], d["norm_mean"], "o-", ms=2.5, lw=1, color=c, label=f"pre-{k} residual")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    layer_ticks(ax, S)
    ax.set_ylabel("||h|| (mean, IQR)")
    ax.legend(loc="best")
    ax.set_title("F'  activation magnitude")

    # G: MI per unit per transition
    ax = axes[1, 2]
    G = units.pivot(index="unit", columns="transition", values="mi_nats").to_numpy()
    uorder = np.argsort(np.nanmean(G, axis=1))
    im = ax.imshow(G[uorder], aspect="auto", cmap="magma", interpolation="nearest",
                   vmin=0, vmax=np.nanpercentile(G, 99))
    ax.set_xlabel("transition (source layer)")
    layer_ticks(ax, S)
    ax.set_ylabel("unit (sorted by mean MI)")
    fig.colorbar(im, ax=ax, label="MI (nats)", shrink=0.8)
    ax.set_title("G  mutual information per unit")

    # H: mean MI per transition
    ax = axes[1, 3]
    for t in ("within", "cross"):
        d = units[units["type"] == t].groupby("transition")["mi_nats"]
        m, q1, q3 = d.mean(), d.quantile(0.25), d.quantile(0.75)
        ax.fill_between(m.index, q1, q3, color=TYPE_COLORS[t], alpha=0.2, lw=0)
        ax.plot(m.index, m.to_numpy(), "o-", ms=2.5, lw=1, color=TYPE_COLORS[t], label=TYPE_LABELS[t])
    ax.set_xlabel("transition (source layer)")
    layer_ticks(ax, S)
    ax.set_ylabel("MI (nats; mean over units, IQR)")
    ax.set_title("H  mean mutual information")
    # one legend for the transition types of E, F and H, below the panels: inside them it
    # covers the IQR bands wherever it goes
    handles = [plt.Line2D([], [], color=TYPE_COLORS[t], marker="o", ms=2.5, lw=1, label=TYPE_LABELS[t])
               for t in ("within", "cross")]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.3, lw=0, label="interquartile range (E, F: over samples; H: over units)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, title="E, F, H:")
    fig.suptitle(title, fontsize=10)
    return fig
