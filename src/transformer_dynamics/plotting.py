"""Figures from tables (never from the activation store): Figures 1-4 of the paper.

Every function takes the tables written by the analysis rules and returns a matplotlib
Figure; :func:`save` writes it as PNG and PDF. Transition types have fixed colours
(:data:`TYPE_COLORS`) across all figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from .depth import paper_layer  # noqa: E402

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


def _layer_ticks(ax: plt.Axes, n_sublayers: int, axis: str = "x", every: int | None = None) -> None:
    """Ticks at each layer's attn sublayer, labelled with the layer number."""
    n_layers = n_sublayers // 2
    step = every or max(1, n_layers // 8)
    pos = np.arange(0, n_sublayers, 2 * step)
    labels = [str(p // 2) for p in pos]
    if axis == "x":
        ax.set_xticks(pos, labels)
    else:
        ax.set_yticks(pos, labels)


def _by_type(ax: plt.Axes, tr: pd.DataFrame, prefix: str, ylabel: str) -> None:
    for t in ("within", "cross"):
        d = tr[tr["type"] == t]
        x = d["src"].to_numpy()
        ax.fill_between(x, d[f"{prefix}_q25"], d[f"{prefix}_q75"], color=TYPE_COLORS[t], alpha=0.2, lw=0)
        ax.plot(x, d[f"{prefix}_mean"], "o-", ms=2.5, lw=1, color=TYPE_COLORS[t], label=TYPE_LABELS[t])
    ax.set_ylabel(ylabel)
    ax.set_xlabel("layer of the transition's source")
    _layer_ticks(ax, int(tr["dst"].max()) + 1)


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
    _layer_ticks(ax, S, "y")
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
    _layer_ticks(ax, S)
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
    ax.set_xlim(0, 1)
    ax.set_ylim(0, np.nanpercentile(D.to_numpy(), 99.5) * 1.05 + 1e-9)
    ax.set_xlabel("Pearson r")
    ax.set_ylabel("density over a unit's transitions")
    ax.legend(loc="upper left")
    ax.set_title("D  per-unit distribution of correlations")

    # E: cosine similarity
    ax = axes[0, 3]
    _by_type(ax, transitions, "cosine", "cosine similarity (mean, IQR)")
    ax.legend(loc="lower right")
    ax.set_title("E  cosine similarity of successive RS vectors")

    # F: velocity
    ax = axes[1, 0]
    _by_type(ax, transitions, "velocity", "velocity ||h(l+1) - h(l)|| (mean, IQR)")
    ax.set_yscale("log")
    ax.legend(loc="upper left")
    ax.set_title("F  velocity")

    # F': magnitude per sublayer
    ax = axes[1, 1]
    for k, c in (("attn", TYPE_COLORS["within"]), ("mlp", TYPE_COLORS["cross"])):
        d = sublayers[sublayers["kind"] == k]
        ax.fill_between(d["sublayer_index"], d["norm_q25"], d["norm_q75"], color=c, alpha=0.2, lw=0)
        ax.plot(d["sublayer_index"], d["norm_mean"], "o-", ms=2.5, lw=1, color=c, label=f"pre-{k} residual")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    _layer_ticks(ax, S)
    ax.set_ylabel("||h|| (mean, IQR)")
    ax.legend(loc="upper left")
    ax.set_title("F'  activation magnitude")

    # G: MI per unit per transition
    ax = axes[1, 2]
    G = units.pivot(index="unit", columns="transition", values="mi_nats").to_numpy()
    uorder = np.argsort(np.nanmean(G, axis=1))
    im = ax.imshow(G[uorder], aspect="auto", cmap="magma", interpolation="nearest",
                   vmin=0, vmax=np.nanpercentile(G, 99))
    ax.set_xlabel("transition (source layer)")
    _layer_ticks(ax, S)
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
    _layer_ticks(ax, S)
    ax.set_ylabel("MI (nats; mean over units, IQR)")
    ax.legend(loc="upper right")
    ax.set_title("H  mean mutual information")
    fig.suptitle(title, fontsize=10)
    return fig


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
    ax.axvline(rot["R"].mean(), color="#2ca02c", lw=1.5, ls="--")
    ax.axvline(null_sample["R_null"].mean(), color="#555555", lw=1.5, ls="--")
    ax.set_xlabel("rotations R (turns; < 0 = clockwise)")
    ax.set_ylabel("density over units")
    ax.legend(loc="upper right", fontsize=6)
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
    ax.legend(loc="upper left", fontsize=7, markerscale=4, ncol=2)
    ax.set_title("C  rotations of every unit and its controls")
    fig.suptitle(title, fontsize=10)
    return fig


def _depth_line(ax: plt.Axes, x: np.ndarray, y: np.ndarray, cmap: str = "viridis", lw: float = 2.0) -> LineCollection:
    pts = np.column_stack([x, y])
    lc = LineCollection(np.stack([pts[:-1], pts[1:]], axis=1), cmap=cmap, lw=lw, zorder=3)
    lc.set_array(np.linspace(0, 1, len(pts) - 1))
    ax.add_collection(lc)
    return lc


def figure3(curve: pd.DataFrame, codes: pd.DataFrame, distances: pd.DataFrame, explained: pd.DataFrame,
            title: str, n_faint: int = 200) -> plt.Figure:
    """Figure 3: CAE training curve, bottleneck trajectories (B), distances (C), explained variance (D)."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), constrained_layout=True)
    ax = axes[0]
    ax.plot(curve["epoch"], curve["train_loss"], label="train")
    ax.plot(curve["epoch"], curve["val_loss"], label="validation")
    best = curve.loc[curve["val_loss"].idxmin()]
    ax.axvline(best["epoch"], color="k", ls=":", lw=1, label=f"kept: epoch {int(best['epoch'])}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE per value (training inputs)")
    ax.legend()
    ax.set_title("A  CAE training")

    ax = axes[1]
    S = int(codes["sublayer_index"].max()) + 1
    c = codes.sort_values(["sample", "sublayer_index"])
    Z = c[["z1", "z2"]].to_numpy().reshape(-1, S, 2)
    for z in Z[:n_faint]:
        ax.plot(z[:, 0], z[:, 1], color="k", alpha=0.08, lw=0.5)
    m = Z.mean(0)
    lc = _depth_line(ax, m[:, 0], m[:, 1])
    ax.scatter(m[0, 0], m[0, 1], color="k", s=15, zorder=4)
    lo, hi = np.percentile(Z.reshape(-1, 2), [2, 98], axis=0)
    lo, hi = np.minimum(lo, m.min(0)), np.maximum(hi, m.max(0))  # always show the whole mean trajectory
    pad = 0.1 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    fig.colorbar(lc, ax=ax, label="depth (sublayer / 2L)", shrink=0.8)
    ax.set_xlabel("bottleneck unit 1")
    ax.set_ylabel("bottleneck unit 2")
    ax.set_title(f"B  mean trajectory over {len(Z)} test samples")

    ax = axes[2]
    ax.errorbar(distances["transition"], distances["distance_mean"], yerr=distances["distance_sd"], fmt="o-",
                ms=2.5, lw=1, elinewidth=0.5, color="#9467bd")
    ax.set_xlabel("transition (source layer)")
    _layer_ticks(ax, S)
    ax.set_ylabel("distance in bottleneck (mean ± sd)")
    ax.set_title("C  distance between successive sublayers")

    ax = axes[3]
    ev = explained.sort_values("sublayer_index")
    x, y = ev["sublayer_index"].to_numpy(), ev["explained_variance"].to_numpy()
    floor = -0.5  # a few badly reconstructed sublayers (often the first) would squash the rest
    ax.plot(x, np.maximum(y, floor), "o-", ms=2.5, color="#8c564b")
    low = y < floor
    if low.any():
        ax.plot(x[low], np.full(low.sum(), floor), "v", ms=5, color="#d62728",
                label=f"below {floor}: " + ", ".join(f"{v:.1f}" for v in y[low][:4]) + (" ..." if low.sum() > 4 else ""))
        ax.legend(loc="lower right", fontsize=6)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("layer")
    _layer_ticks(ax, S)
    ax.set_ylabel("explained variance (test set)")
    ax.set_ylim(min(0, max(floor, np.nanmin(y))) - 0.05, 1.02)
    ax.set_title("D  reconstruction per sublayer")
    fig.suptitle(title, fontsize=10)
    return fig


def figure4(traj: pd.DataFrame, spectrum: pd.DataFrame, spectra: pd.DataFrame, n_pcs: pd.DataFrame,
            control: pd.DataFrame, teleport: pd.DataFrame | None, title: str, arrow_steps: int = 12,
            n_faint: int = 300) -> plt.Figure:
    """Figure 4: PC trajectories (A), cumulative EV (B), EV per sublayer (C), teleport quivers (D)."""
    layers = sorted(teleport["layer"].unique()) if teleport is not None else []
    ncol = max(4, len(layers))  # A, B, C and the dimensionality panel C' on the top row
    fig = plt.figure(figsize=(3.3 * ncol, 7.0), constrained_layout=True)
    gs = fig.add_gridspec(2, ncol)
    S = int(traj["sublayer_index"].max()) + 1
    t = traj.sort_values(["sample", "sublayer_index"])
    Z = t[["pc1", "pc2"]].to_numpy().reshape(-1, S, 2)

    ax = fig.add_subplot(gs[0, 0])
    for z in Z[:n_faint]:
        ax.plot(z[:, 0], z[:, 1], color="k", alpha=0.04, lw=0.5)
    m = Z.mean(0)
    lc = _depth_line(ax, m[:, 0], m[:, 1])
    ax.autoscale()
    fig.colorbar(lc, ax=ax, label="depth (sublayer / 2L)", shrink=0.8)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title(f"A  PC trajectories ({len(Z)} samples, mean coloured)")

    ax = fig.add_subplot(gs[0, 1])
    ax.plot(spectrum["component"], spectrum["cumulative"], "o-", ms=2, color="#17becf")
    ax.set_xscale("log")
    ax.axhline(0.9, color="k", ls=":", lw=1)
    reached = spectrum["cumulative"] >= 0.9
    n_comp = int(spectrum["component"].max())
    k90 = (f"90% at {int(spectrum.loc[reached, 'component'].min())} PCs" if reached.any()
           else f"90% not reached within {n_comp} PCs")
    ax.set_xlabel("number of components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_title(f"B  all sublayers pooled ({k90})")

    ax = fig.add_subplot(gs[0, 2])
    cmap = plt.get_cmap("viridis")
    for s, g in spectra.groupby("sublayer_index"):
        ax.plot(g["component"], g["cumulative"], color=cmap(s / max(1, S - 1)), lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("number of components (per-sublayer PCA)")
    ax.set_ylabel("cumulative explained variance")
    ax.axhline(0.9, color="k", ls=":", lw=1)
    ax.set_title("C  per sublayer (colour = depth)")
    n_layers = S // 2
    # C': PCs needed for 90 % per sublayer, its own panel (was an inset over the curves)
    ax = fig.add_subplot(gs[0, 3:])
    npc = n_pcs.sort_values("sublayer_index")
    ok = npc["n_pcs_90"].notna()
    ax.plot(npc.loc[ok, "sublayer_index"], npc.loc[ok, "n_pcs_90"], "o-", ms=2.5, lw=1, color="k",
            label="PCs for 90 % of the sublayer's variance")
    if (~ok).any():
        ax.plot(npc.loc[~ok, "sublayer_index"], np.full((~ok).sum(), n_comp), "x", ms=4, color="#d62728",
                label=f"not reached within {n_comp} PCs ({(~ok).sum()} of {len(npc)} sublayers)")
    ax.set_ylim(0, n_comp * 1.08)
    ax.set_xlim(-1, S)
    ax.set_xlabel("layer")
    _layer_ticks(ax, S)
    ax.set_ylabel("PCs for 90 % (per-sublayer PCA)")
    ax.legend(loc="lower right" if ok.any() and npc.loc[ok, "n_pcs_90"].iloc[-1] > n_comp / 2 else "upper left",
              fontsize=7)
    ax.set_title("C'  dimensionality per sublayer")

    cz = control[["pc1", "pc2"]].to_numpy()
    for j, layer in enumerate(layers):
        ax = fig.add_subplot(gs[1, j])
        ax.plot(cz[:, 0], cz[:, 1], color="0.6", lw=1.5, zorder=1, label="control")
        d = teleport[teleport["layer"] == layer].sort_values(["run", "sublayer_index"])
        for run, r in d.groupby("run"):
            zz = r[["pc1", "pc2"]].to_numpy()
            end = min(arrow_steps, len(zz) - 1)
            ax.plot(zz[: end + 1, 0], zz[: end + 1, 1], color="#1f77b4", alpha=0.15, lw=0.5)
            ax.annotate("", xy=zz[end], xytext=zz[0],
                        arrowprops=dict(arrowstyle="->", color="#d62728", lw=0.7, alpha=0.8))
        starts = d[d["sublayer_index"] == 2 * layer][["pc1", "pc2"]].to_numpy()
        ax.scatter(starts[:, 0], starts[:, 1], s=3, color="k", zorder=3)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2" if j == 0 else "")
        paper = paper_layer(layer, n_layers)
        ax.set_title(f"D  teleport at layer {layer} of {n_layers}\n(≙ paper's layer {paper} of 32)")
        if j == 0:
            ax.legend(loc="best")
    fig.suptitle(title + f" (arrows: {arrow_steps} sublayers after teleporting)", fontsize=10)
    return fig


def figure_perturbation_kinds(metrics: pd.DataFrame, title: str) -> plt.Figure:
    """Distance to the control (MSE) and spread of perturbed trajectories, per kind and layer."""
    kinds = list(dict.fromkeys(metrics["kind"]))
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 6), squeeze=False, constrained_layout=True)
    layers = sorted(metrics["layer"].unique())
    cmap = plt.get_cmap("plasma")
    for j, kind in enumerate(kinds):
        for i, (col, lab) in enumerate((("mse_full", "MSE to control (per dim)"), ("var_full", "variance across runs (per dim)"))):
            ax = axes[i, j]
            for k, layer in enumerate(layers):
                d = metrics[(metrics["kind"] == kind) & (metrics["layer"] == layer)]
                rel = d[col] / d["control_ms"]
                ax.plot(d["steps_after"], rel, color=cmap(k / max(1, len(layers) - 1) * 0.9), lw=1.2,
                        label=f"layer {layer}")
            ax.set_yscale("log")
            ax.set_xlabel("sublayers after the perturbation")
            ax.set_ylabel(lab + " / control mean square")
            ax.set_title(f"{kind}: {'distance to control' if i == 0 else 'spread of perturbed runs'}")
            if i == 0 and j == 0:
                ax.legend()
    fig.suptitle(title, fontsize=10)
    return fig


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
    axes[2].set_yscale("log")
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
