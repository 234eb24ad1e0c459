"""Findings by token position (beyond the paper): ``results/<model>/figures/findings_by_position.png``.

Reads only the table of :func:`transformer_dynamics.views.findings_by_bucket`
and the CAE's per-bucket explained variance.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from ..findings import _key_order
from ..positions import BUCKETS
from .style import plt

COND_COLORS = {"original": "#1f77b4", "shuffled": "#ff7f0e"}
VERDICT_MARKERS = {"holds": ("o", True), "does not hold": ("o", False), "inconclusive": ("x", True)}


def _bucket_ticks(ax: plt.Axes, buckets: list[str], n_tokens: dict[str, int]) -> None:
    ax.set_xticks(range(len(buckets)), [f"{b}\n{n_tokens.get(b, 0)}" for b in buckets])
    ax.set_xlim(-0.5, len(buckets) - 0.5)


def figure_findings_by_position(table: pd.DataFrame, cae: pd.DataFrame | None = None) -> plt.Figure:
    """One panel per finding: its statistic against position bucket, one line per condition.

    Error bars are the finding's 95 % bootstrap interval where it has one; grey ticks mark the
    statistic under its null where it has one; the marker says the verdict (filled: holds,
    open: does not hold, cross: inconclusive). Below each bucket label: the tokens analysed
    (original condition). A last panel shows the CAE's test-set explained variance (mean over
    sublayers) per bucket.
    """
    t = table[table["key"].notna()].copy()
    buckets = [b for b in BUCKETS if b in set(table["bucket"])]
    keys = sorted(t["key"].unique(), key=_key_order)
    n_panels = len(keys) + (1 if cae is not None and len(cae) else 0)
    ncol = 4
    nrow = -(-n_panels // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.7 * nrow), constrained_layout=True, squeeze=False)
    conds = list(dict.fromkeys(table["condition"]))
    first = conds[0]
    n_tok = table[table["condition"] == first].groupby("bucket")["n_tokens"].first().to_dict()
    for ax, key in zip(axes.flat, keys):
        k = t[t["key"] == key]
        for j, c in enumerate(conds):
            kc = k[k["condition"] == c].set_index("bucket").reindex(buckets)
            x = np.arange(len(buckets)) + (j - (len(conds) - 1) / 2) * 0.12
            y = kc["value"].to_numpy(dtype=float)
            color = COND_COLORS.get(c, f"C{j + 2}")
            ax.plot(x, y, "-", color=color, lw=1, alpha=0.8, label=c)
            lo, hi = kc["ci_low"].to_numpy(dtype=float), kc["ci_high"].to_numpy(dtype=float)
            has = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
            if has.any():
                ax.errorbar(x[has], y[has], yerr=[y[has] - lo[has], hi[has] - y[has]], fmt="none", ecolor=color,
                            elinewidth=0.8, capsize=1.5)
            bounds = kc["bound"].fillna("") if "bound" in kc else pd.Series("", index=kc.index)
            for xi, yi, v, bd in zip(x, y, kc["verdict"].fillna(""), bounds):
                if not np.isfinite(yi):
                    continue
                marker, filled = VERDICT_MARKERS.get(v, ("s", False))
                if bd == ">":  # a lower bound (90 % not reached within the PCs computed)
                    marker = "^"
                ax.plot(xi, yi, marker, ms=5 if marker != "x" else 6, color=color,
                        mfc=color if filled else "white", mew=1.2)
            if "null_value" in kc:
                nv = kc["null_value"].to_numpy(dtype=float)
                ok = np.isfinite(nv)
                ax.plot(x[ok], nv[ok], "_", color="0.45", ms=8, mew=1.5,
                        label="null" if j == 0 and ok.any() else None)
            undefined = ~np.isfinite(y) & kc["verdict"].notna().to_numpy()
            for xi in x[undefined]:
                ax.text(xi, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=6, color=color)
        stat = str(k["statistic"].dropna().iloc[0]) if k["statistic"].notna().any() else ""
        claim = str(k["claim"].dropna().iloc[0]) if k["claim"].notna().any() else ""
        ax.set_title("\n".join(textwrap.wrap(f"{key}: {claim}", 52)), fontsize=8, loc="left")
        ax.set_ylabel(_short(stat), fontsize=7)
        _bucket_ticks(ax, buckets, n_tok)
        ax.set_xlabel("position bucket / tokens analysed", fontsize=7)
        if key.startswith(("F1b", "F2a", "F2b", "F2d", "F3", "F5b")):
            ax.axhline(0, color="0.7", lw=0.6, zorder=0)
    used = len(keys)
    if cae is not None and len(cae):
        ax = axes.flat[used]
        for j, c in enumerate(dict.fromkeys(cae["condition"])):
            g = cae[cae["condition"] == c].groupby("bucket")["explained_variance"].mean().reindex(buckets)
            ax.plot(range(len(buckets)), g.to_numpy(), "o-", color=COND_COLORS.get(c, f"C{j + 2}"), ms=4, lw=1, label=c)
        ax.set_title("CAE (2-D bottleneck) on pooled tokens", fontsize=8, loc="left")
        ax.set_ylabel("test explained variance\n(mean over sublayers)", fontsize=7)
        _bucket_ticks(ax, buckets, cae[cae["condition"] == first].groupby("bucket")["n_tokens"].first().to_dict())
        ax.set_xlabel("position bucket / held-out tokens", fontsize=7)
        used += 1
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=COND_COLORS.get(c, f"C{j + 2}"), marker="o", lw=1, label=c)
               for j, c in enumerate(conds)]
    handles += [plt.Line2D([], [], color="0.3", marker="o", ls="", label="holds"),
                plt.Line2D([], [], color="0.3", marker="o", mfc="white", ls="", label="does not hold"),
                plt.Line2D([], [], color="0.3", marker="x", ls="", label="inconclusive"),
                plt.Line2D([], [], color="0.3", marker="^", mfc="white", ls="", label="lower bound (90 % not reached)"),
                plt.Line2D([], [], color="0.45", marker="_", ms=8, mew=1.5, ls="", label="statistic under its null")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle("The paper's findings by token position ('last' = the paper's observations; "
                 "positional buckets exclude each text's last token)", fontsize=9)
    return fig


def _short(statistic: str) -> str:
    """A y-axis label from a finding's statistic text (wrapped)."""
    return "\n".join(textwrap.wrap(statistic, 34)[:3])
