"""Figures: what a reader sees, checked on small synthetic tables made by the analysis code.

For every figure function: the number of panels, every panel's axes labelled, at least two
tick labels on every numeric axis, no legend over the data's artists, no axis label over a
neighbouring panel. The tables come from the same functions the rules call, on a synthetic
residual stream (a random walk over sublayers with a depth trend and one anti-correlated
unit, so Fig 1D has negative r), so a change of a table's columns reaches these tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from transformer_dynamics import autoencoder as cae
from transformer_dynamics import pca as P
from transformer_dynamics.figures import autoencoder as plot_autoencoder
from transformer_dynamics.figures import models as plot_models
from transformer_dynamics.figures import pca as plot_pca
from transformer_dynamics.figures import rotations as plot_rotations
from transformer_dynamics.figures import stats as plot_stats
from transformer_dynamics import rotations as R
from transformer_dynamics import unit_stats
from transformer_dynamics.figures.style import plt
from transformer_dynamics.sublayers import sublayer_labels

L, N, D = 6, 40, 16
S = 2 * L


def synthetic_rs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(N, S, D)) * np.linspace(0.5, 2, S)[None, :, None]
    rs = np.cumsum(steps, axis=1) + np.linspace(0, 5, S)[None, :, None] * rng.normal(size=D)
    rs[:, 1::2, 0] *= -1  # one unit flips sign at every other sublayer: negative successive r
    return rs


class Store:
    """What pca.pca_tables reads of an ActivationStore."""

    def __init__(self, rs):
        self.rs, self.sample_chunk = rs, 10
        self.n_samples, self.d_model = rs.shape[0], rs.shape[2]
        self.labels = sublayer_labels(rs.shape[1] // 2)

    def iter_samples(self, rows=None):
        for s0 in range(0, self.n_samples, rows or self.sample_chunk):
            yield s0, self.rs[s0: s0 + (rows or self.sample_chunk)]

    def chunks(self, sublayers=None, rows=None):
        for _, rs in self.iter_samples(rows):
            yield rs if sublayers is None else rs[:, sublayers]


@pytest.fixture(scope="module")
def tables():
    rs = synthetic_rs()
    labels = sublayer_labels(L)
    t = unit_stats.unit_block_tables(rs, labels, 0, mi_grid=32)
    t["transitions"], t["sublayers"] = unit_stats.vector_stats(iter([rs[:20], rs[20:]]), labels)
    rot = R.rotation_block_tables(rs, 0, 50, "points", "mean", 0, ("increments", "activations"))
    t["rotations"] = R.add_q_values(rot["table"])
    t["rot_traj"], t["rot_null"] = rot["traj"], rot["null"]
    res, pt = P.pca_tables(Store(rs), 10, memory_mb=10)
    t.update({"traj": pt["trajectories"], "spectrum": pt["spectrum"], "spectra": pt["sublayer_spectra"],
              "n_pcs": pt["n_pcs"]})
    t["pca"] = res
    return t


def perturbation_metrics(res, rs):
    """trajectory_metrics of made-up perturbed runs, per kind and layer (as the perturb rule writes them)."""
    rng = np.random.default_rng(1)
    control = rs[0]
    out = []
    for kind in ("teleport", "noise", "swap"):
        for layer in (0, 2, 3, 5):
            start = 2 * layer
            pert = control[None] + rng.normal(size=(8, S, D)) * np.exp(-0.3 * np.arange(S))[None, :, None] * 5
            out.append(perturb_metrics(pert, control, res, start).assign(kind=kind, layer=layer))
    return pd.concat(out, ignore_index=True)


def perturb_metrics(pert, control, res, start):
    from transformer_dynamics.perturb import trajectory_metrics
    return trajectory_metrics(pert, control, res, start)


def teleport_runs(res, rs):
    rng = np.random.default_rng(2)
    rows = []
    for layer in (0, 2, 3, 5):
        start = 2 * layer
        for run in range(6):
            Z = res.transform(rs[run, start:] + rng.normal(size=(S - start, D)), 2)
            rows.append(pd.DataFrame({"kind": "teleport", "layer": layer, "run": run,
                                      "sublayer_index": np.arange(start, S), "pc1": Z[:, 0], "pc2": Z[:, 1]}))
    return pd.concat(rows, ignore_index=True)


def cae_tables(rs, collapse=False):
    from transformer_dynamics.store import sample_reader

    class Arr:
        def __init__(self, a):
            self.a, self.shape = a, a.shape

        def __getitem__(self, k):
            return self.a[k]

    settings = {"k": 3, "d_bottleneck": 2, "split": [0.6, 0.2, 0.2], "lr": 1e-2, "max_epochs": 15, "patience": 5,
                "batch_size": 32, "scaling": "unit", "device": "cpu"}
    _, t = cae.train_and_evaluate(sample_reader(Arr(rs.astype(np.float32)), chunk=10), N, D, settings, 0, "cpu")
    if collapse:
        zc = [c for c in t["codes"] if c.startswith("z")]
        t["codes"][zc] = 0.3 + 1e-6 * np.random.default_rng(0).normal(size=(len(t["codes"]), len(zc)))
        t["distances"] = cae.bottleneck_distances(t["codes"])
        t["diagnostics"] = cae.fit_diagnostics(t["curve"], t["codes"], 15, 5)
    return t


# ------------------------------------------------------------------------------ checks


def _data_points(ax):
    """Display coordinates of the data: line vertices (densified), scatter offsets, bars, bands.

    Faint background (alpha < 0.2: hundreds of single trajectories, point clouds) is left out."""
    pts = []
    for ln in ax.get_lines():
        if (ln.get_alpha() or 1) < 0.2 or not ln.get_visible():
            continue
        xy = ln.get_transform().transform(np.asarray(ln.get_xydata(), dtype=float))
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy) > 1:  # the segments between vertices too (an axvline has two vertices)
            t = np.linspace(0, 1, 25)[:, None, None]
            xy = (xy[:-1][None] * (1 - t) + xy[1:][None] * t).reshape(-1, 2)
        pts.append(xy)
    for c in ax.collections:
        if (c.get_alpha() or 1) < 0.2:
            continue
        if isinstance(c, PolyCollection):  # fill_between bands
            for path in c.get_paths():
                v = c.get_transform().transform(path.vertices)
                pts.append(v[np.isfinite(v).all(1)])
        elif len(c.get_offsets()):
            v = c.get_offset_transform().transform(np.asarray(c.get_offsets(), dtype=float))
            pts.append(v[np.isfinite(v).all(1)])
    for p in ax.patches:
        if isinstance(p, Rectangle) and (p.get_alpha() or 1) >= 0.2 and p.get_height() != 0:
            bb = p.get_window_extent()
            xs = np.linspace(bb.x0, bb.x1, 5)
            pts.append(np.column_stack([xs, np.full(5, bb.y1)]))  # a bar's top edge
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _is_colorbar(ax):
    return ax.get_label() == "<colorbar>" or hasattr(ax, "_colorbar")


def check_figure(fig, n_panels):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison and not _is_colorbar(ax)]
    assert len(panels) == n_panels, [ax.get_title() for ax in panels]
    for ax in panels:
        name = ax.get_title() or "untitled panel"
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), f"{name}: an axis without a label"
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            ticks = list(zip(axis.get_majorticklabels(), axis.get_majorticklocs()))
            ticks += list(zip(axis.get_minorticklabels(), axis.get_minorticklocs()))  # log axes label minor ticks
            shown = {v for t, v in ticks if lo - 1e-9 * abs(hi - lo) <= v <= hi + 1e-9 * abs(hi - lo) and t.get_text()}
            assert len(shown) >= 2, f"{name}: {axis.axis_name}-axis has {len(shown)} tick label(s)"
        leg = ax.get_legend()
        if leg is not None:
            bb = leg.get_window_extent(r)
            pts = _data_points(ax)
            inside = (pts[:, 0] > bb.x0) & (pts[:, 0] < bb.x1) & (pts[:, 1] > bb.y0) & (pts[:, 1] < bb.y1)
            assert not inside.any(), f"{name}: the legend covers {inside.sum()} data points"
        # an axis label does not reach into another panel
        for lab in (ax.yaxis.label, ax.xaxis.label):
            lb = lab.get_window_extent(r)
            for other in panels:
                if other is not ax:
                    ob = other.get_window_extent(r)
                    assert not Bbox.intersection(lb, ob), f"{name}: '{lab.get_text()}' overlaps {other.get_title()}"
    plt.close(fig)


# ------------------------------------------------------------------------------ figures


def test_figure1(tables):
    t = tables
    assert (t["rdist"].loc[t["rdist"]["density"] > 0, "bin_lo"] < 0).any()  # some unit has negative r
    fig = plot_stats.figure1(t["units"], t["means"], t["rdist"], t["transitions"], t["sublayers"], "synthetic")
    ax = next(a for a in fig.axes if a.get_title().startswith("D "))
    assert ax.get_xlim()[0] < 0, "Fig 1D hides the negative correlations"
    check_figure(fig, 8)


def test_figure2(tables):
    t = tables
    fig = plot_rotations.figure2(t["rotations"], t["rot_traj"], t["rot_null"], "synthetic", (3,))
    check_figure(fig, 6)  # 4 portraits, B, C


def test_figure3_and_a_collapsed_fit_is_not_drawn_as_a_result():
    rs = synthetic_rs()
    t = cae_tables(rs)
    fig = plot_autoencoder.figure3(t["curve"], t["codes"], t["distances"], t["explained"], "synthetic",
                                   diagnostics=t["diagnostics"])
    assert not any("NOT A RESULT" in x.get_text() for ax in fig.axes for x in ax.texts)
    check_figure(fig, 4)
    c = cae_tables(rs, collapse=True)
    assert c["diagnostics"]["collapsed"] and not c["diagnostics"]["usable"]
    fig = plot_autoencoder.figure3(c["curve"], c["codes"], c["distances"], c["explained"], "synthetic",
                                   diagnostics=c["diagnostics"])
    stamped = [ax.get_title()[0] for ax in fig.axes for x in ax.texts if "NOT A RESULT" in x.get_text()]
    assert stamped == ["B", "C", "D"] and "fit not usable" in fig._suptitle.get_text()
    plt.close(fig)


def test_figure3_loss_axis_has_major_ticks_when_the_loss_spans_less_than_a_decade():
    """The quick run's CAE: loss 160 -> 48 on a log axis showed one major tick (10^2)."""
    curve = pd.DataFrame({"epoch": range(1, 41), "train_loss": np.geomspace(160, 48, 40),
                          "val_loss": np.geomspace(159, 48.2, 40), "best": True, "seconds": 1.0})
    t = cae_tables(synthetic_rs())
    fig = plot_autoencoder.figure3(curve, t["codes"], t["distances"], t["explained"], "synthetic")
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    major = [v for x, v in zip(ax.yaxis.get_majorticklabels(), ax.yaxis.get_majorticklocs())
             if lo <= v <= hi and x.get_text()]
    assert len(major) >= 3, major
    check_figure(fig, 4)


def test_figure4_and_perturbation_kinds(tables):
    t = tables
    res, rs = t["pca"], synthetic_rs()
    control = pd.DataFrame({"sublayer_index": range(S), "pc1": res.transform(rs[0], 2)[:, 0],
                            "pc2": res.transform(rs[0], 2)[:, 1]})
    fig = plot_pca.figure4(t["traj"], t["spectrum"], t["spectra"], t["n_pcs"], control, teleport_runs(res, rs),
                           "synthetic", 4)
    check_figure(fig, 8)  # A, B, C, C' and 4 teleport layers
    fig = plot_pca.figure_perturbation_kinds(perturbation_metrics(res, rs), "synthetic")
    check_figure(fig, 6)


def test_figure_compare_models(tables):
    t = {k: tables[k] for k in ("units", "transitions", "rotations", "n_pcs")}
    fig = plot_models.figure_compare_models({"a": t, "b": {**t, "rotations": t["rotations"].assign(abs_R=3.0)}})
    check_figure(fig, 5)


def test_the_legend_check_catches_a_legend_over_data():
    """The check itself can fail: a legend put on top of a line."""
    fig, ax = plt.subplots()
    ax.plot(np.linspace(0, 1, 50), np.full(50, 0.95), label="a line along the top")
    ax.plot([0, 1], [0, 0.1], label="another")
    ax.legend(loc="upper left")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    with pytest.raises(AssertionError, match="legend covers"):
        check_figure(fig, 1)
