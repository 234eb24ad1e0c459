"""Figure 4 and the perturbation kinds: PCA trajectories, spectra and perturbations (§2.8, Fig 4).

Reads only the PCA and perturbation tables (``pca/<condition>/``, ``perturbations/<condition>/``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..depth import paper_layer
from ..sublayers import pre_attention_index
from .style import depth_line, layer_ticks, plt


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
    lc = depth_line(ax, m[:, 0], m[:, 1])
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
    layer_ticks(ax, S)
    ax.set_ylabel("PCs for 90 % (per-sublayer PCA)")
    ax.legend(loc="best", fontsize=7)  # the place that covers the fewest points (the x's sit at the top)
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
        starts = d[d["sublayer_index"] == pre_attention_index(layer)][["pc1", "pc2"]].to_numpy()
        ax.scatter(starts[:, 0], starts[:, 1], s=3, color="k", zorder=3)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
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
        for i, (col, lab) in enumerate((("mse_full", "MSE to control"), ("var_full", "variance across runs"))):
            ax = axes[i, j]
            for k, layer in enumerate(layers):
                d = metrics[(metrics["kind"] == kind) & (metrics["layer"] == layer)]
                rel = d[col] / d["control_ms"]
                # markers: a perturbation at the last layer has only 1-2 sublayers after it,
                # too short to see as a line
                ax.plot(d["steps_after"], rel, color=cmap(k / max(1, len(layers) - 1) * 0.9), lw=1.2,
                        marker="o", ms=3 if len(d) <= 3 else 0, label=f"layer {layer}")
            ax.set_yscale("log")
            ax.set_xlabel("sublayers after the perturbation")
            ax.set_ylabel(f"{lab} per dim\n/ control mean square")  # two short lines: clear of the panel to the left
            ax.set_title(f"{kind}: {'distance to control' if i == 0 else 'spread of perturbed runs'}")
            if i == 0 and j == 0:
                ax.legend()
    fig.suptitle(title, fontsize=10)
    return fig
