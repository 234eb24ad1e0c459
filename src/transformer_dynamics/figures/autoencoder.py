"""Figure 3: the compressing autoencoder's bottleneck trajectories (§2.7, Fig 3).

Reads only the autoencoder's tables (``autoencoder/<condition>/``) and its fit diagnostics
(:func:`transformer_dynamics.autoencoder.fit_diagnostics`): a fit that is not usable
(collapsed, or no better than the mean vector) has panels B-D greyed and stamped "not a
result"; an unconverged fit or loss spikes are marked in panel A and the title.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pandas as pd

from .style import depth_line, layer_ticks, plt


def _stamp(ax: plt.Axes, text: str) -> None:
    """Grey a panel's data and write across it why it is not a result."""
    for art in list(ax.lines) + list(ax.collections):
        art.set_alpha(0.15)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#d62728",
            wrap=True, bbox=dict(boxstyle="round", fc="white", ec="#d62728", alpha=0.9), zorder=10)


def figure3(curve: pd.DataFrame, codes: pd.DataFrame, distances: pd.DataFrame, explained: pd.DataFrame,
            title: str, n_faint: int = 200, diagnostics: dict[str, Any] | None = None) -> plt.Figure:
    """Figure 3: CAE training curve, bottleneck trajectories (B), distances (C), explained variance (D).

    ``diagnostics``: :func:`~transformer_dynamics.autoencoder.fit_diagnostics` of the fit;
    when it is not ``usable``, B-D are stamped "not a result".
    """
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), constrained_layout=True)
    diag = diagnostics or {}
    ax = axes[0]
    ax.plot(curve["epoch"], curve["train_loss"], label="train")
    ax.plot(curve["epoch"], curve["val_loss"], label="validation")
    best = curve.loc[curve["val_loss"].idxmin()]
    ax.axvline(best["epoch"], color="k", ls=":", lw=1, label=f"kept: epoch {int(best['epoch'])}")
    if diag.get("mean_baseline_val_loss") is not None:
        ax.axhline(diag["mean_baseline_val_loss"], color="0.5", ls="--", lw=1, label="predict the mean vector")
    for e in diag.get("loss_spikes", []):
        ax.plot(e, float(curve.loc[curve["epoch"] == e, "train_loss"].iloc[0]), "v", color="#d62728", ms=5,
                label="loss spike" if e == diag["loss_spikes"][0] else None)
    losses = np.concatenate([curve["train_loss"], curve["val_loss"]])
    losses = losses[np.isfinite(losses) & (losses > 0)]
    # log scale only when the losses span a decade: a narrower range leaves one tick or none
    if len(losses) and losses.max() / losses.min() >= 10:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE per value (training inputs)")
    # below the panel: inside, "best" still covers the curves of some fits
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ax.set_title("A  CAE training" + ("\n(unconverged: still improving at max_epochs)" if diag.get("unconverged") else ""))

    ax = axes[1]
    S = int(codes["sublayer_index"].max()) + 1
    c = codes.sort_values(["sample", "sublayer_index"])
    Z = c[["z1", "z2"]].to_numpy().reshape(-1, S, 2)
    for z in Z[:n_faint]:
        ax.plot(z[:, 0], z[:, 1], color="k", alpha=0.08, lw=0.5)
    m = Z.mean(0)
    lc = depth_line(ax, m[:, 0], m[:, 1])
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
    mean, sd = distances["distance_mean"].to_numpy(), distances["distance_sd"].to_numpy()
    # a distance is never negative: the lower bar stops at 0
    ax.errorbar(distances["transition"], mean, yerr=[np.minimum(sd, mean), sd], fmt="o-",
                ms=2.5, lw=1, elinewidth=0.5, color="#9467bd")
    ax.set_xlabel("transition (source layer)")
    layer_ticks(ax, S)
    ax.set_ylabel("distance in bottleneck (mean ± sd, ≥ 0)")
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
    ax.set_xlabel("sublayer (ticks: layer, at its pre-attention point)")
    layer_ticks(ax, S)
    ax.set_ylabel("explained variance (test set)")
    ax.set_ylim(min(0, max(floor, np.nanmin(y))) - 0.05, 1.02)
    ax.set_title("D  reconstruction per sublayer")
    if diag and not diag.get("usable", True):
        why = "\n".join(textwrap.wrap(diag.get("status", ""), 40))
        for ax in axes[1:]:
            _stamp(ax, f"NOT A RESULT\n{why}")
        title += " -- fit not usable: " + diag.get("status", "")
    elif diag.get("status", "ok") != "ok":
        title += " -- fit diagnostics: " + diag["status"]
    fig.suptitle("\n".join(textwrap.wrap(title, 170)), fontsize=10)
    return fig
