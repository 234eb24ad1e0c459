"""§2.7 compressing autoencoder (Fig 3): architecture, seeded training, explained variance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from transformer_dynamics import autoencoder as cae
from transformer_dynamics.store import sample_reader


def test_cae_architecture_follows_the_paper():
    w = cae.layer_widths(576, 2, 10)
    assert w[0] == 576 and w[-1] == 2 and len(w) == 10
    r = (2 / 576) ** (1 / 9)
    assert w == [round(576 * r**i) for i in range(10)]
    m = cae.CompressingAutoencoder(576, 2, 10)
    enc = list(m.encoder)
    assert isinstance(enc[-1], nn.Linear) and enc[-1].out_features == 2  # plain bottleneck
    assert sum(isinstance(x, nn.Linear) for x in enc) == 9
    assert sum(isinstance(x, nn.LayerNorm) for x in enc) == 8 and sum(isinstance(x, nn.ReLU) for x in enc) == 8
    dec = list(m.decoder)
    assert isinstance(dec[-1], nn.Linear) and dec[-1].out_features == 576


class ArrayStore:
    """An in-memory stand-in for the Zarr rs array (slicing by sample rows)."""

    def __init__(self, a):
        self.a = a
        self.shape = a.shape
        self.reads = 0

    def __getitem__(self, k):
        self.reads += 1
        return self.a[k]


def toy_trajectories(n=60, S=8, D=10, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, S)
    basis = rng.normal(size=(2, D))
    amp = 1 + 0.1 * rng.normal(size=(n, 1, 1))
    curve = np.stack([np.cos(3 * t), np.sin(3 * t)], -1)  # (S, 2) a curved 2-D trajectory
    return (amp * curve[None] @ basis + 0.01 * rng.normal(size=(n, S, D))).astype(np.float32)


def test_cae_training_is_seeded_splits_by_sequence_and_learns():
    rs = toy_trajectories()
    splits = cae.split_samples(60, [0.6, 0.2, 0.2], seed=1)
    assert sum(len(v) for v in splits.values()) == 60
    assert not set(splits["train"]) & set(splits["test"])
    read = sample_reader(ArrayStore(rs), chunk=8)
    cfg = cae.CAEConfig(k=4, max_epochs=40, patience=8, batch_size=32, seed=3)
    m1, s1, c1 = cae.train_cae(read, splits, 10, cfg, progress=False)
    m2, s2, c2 = cae.train_cae(read, splits, 10, cfg, progress=False)
    pd.testing.assert_frame_equal(c1.drop(columns="seconds"), c2.drop(columns="seconds"))
    assert c1["val_loss"].min() < 0.5 * c1["val_loss"].iloc[0]
    best = c1["val_loss"].idxmin()
    assert cae.evaluate_loss(m1, read, splits["validation"], s1, "cpu") == pytest.approx(c1["val_loss"][best], rel=1e-5)
    codes, ev = cae.encode_and_score(m1, s1, read, splits["test"])
    assert set(codes["sample"]) == set(splits["test"])
    assert ev["explained_variance"].mean() > 0.5
    d = cae.bottleneck_distances(codes)
    assert len(d) == 7 and (d["distance_mean"] > 0).all()


def test_explained_variance_definitions():
    # a perfect model gives 1 for both; predicting the sublayer mean gives r2_within = 0
    rs = toy_trajectories(n=20, S=3, D=4)

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Identity()
            self.decoder = nn.Identity()

    read = sample_reader(ArrayStore(rs), chunk=5)
    _, ev = cae.encode_and_score(Identity(), cae.Scaler("none"), read, np.arange(20))
    np.testing.assert_allclose(ev["explained_variance"], 1)
    np.testing.assert_allclose(ev["r2_within"], 1)


def test_train_and_evaluate_is_the_rule_in_one_call():
    rs = toy_trajectories(n=40, S=6, D=8)
    settings = {"k": 3, "d_bottleneck": 2, "split": [0.6, 0.2, 0.2], "lr": 1e-3, "max_epochs": 5, "patience": 3,
                "batch_size": 16, "scaling": "none"}
    saved, tables = cae.train_and_evaluate(sample_reader(rs, 8), 40, 8, settings, seed=2, extra={"store": "s.zarr"})
    assert set(tables) == {"curve", "codes", "explained", "distances", "diagnostics"}
    assert tables["diagnostics"]["unconverged"] and "unconverged" in tables["diagnostics"]["status"]  # 5 epochs
    splits = cae.split_samples(40, settings["split"], 2)
    assert saved["splits"] == {k: v.tolist() for k, v in splits.items()} and saved["store"] == "s.zarr"
    assert saved["config"]["k"] == 3 and saved["config"]["seed"] == 2
    assert set(tables["codes"]["sample"]) == set(splits["test"]) and len(tables["explained"]) == 6
    again, tables2 = cae.train_and_evaluate(sample_reader(rs, 8), 40, 8, settings, seed=2)
    pd.testing.assert_frame_equal(tables["codes"], tables2["codes"])  # seeded
    assert "store" not in again


def test_cae_in_memory_reader_trains_exactly_as_streaming():
    rs = toy_trajectories()
    splits = cae.split_samples(60, [0.6, 0.2, 0.2], seed=1)
    cfg = cae.CAEConfig(k=4, max_epochs=5, patience=8, batch_size=32, seed=3)
    reads = {"stream": ArrayStore(rs), "memory": ArrayStore(rs)}
    curves = {}
    for name, arr in reads.items():
        read = sample_reader(arr, chunk=8, in_memory_mb=0 if name == "stream" else 100)
        model, _, curves[name] = cae.train_cae(read, splits, 10, cfg, progress=False)
    pd.testing.assert_frame_equal(curves["stream"].drop(columns="seconds"), curves["memory"].drop(columns="seconds"))
    assert reads["memory"].reads == 1 and reads["stream"].reads > 5 * 8  # one read vs chunks every epoch


def test_fit_diagnostics_flag_a_forced_collapse_and_pass_a_good_fit():
    rs = toy_trajectories()
    splits = cae.split_samples(60, [0.6, 0.2, 0.2], seed=1)
    read = sample_reader(ArrayStore(rs), chunk=8)
    cfg = cae.CAEConfig(k=4, max_epochs=40, patience=8, batch_size=32, seed=3)
    model, scaler, curve = cae.train_cae(read, splits, 10, cfg, progress=False)
    base = cae.mean_baseline_loss(read, splits, scaler)
    codes, _ = cae.encode_and_score(model, scaler, read, splits["test"])
    good = cae.fit_diagnostics(curve, codes, cfg.max_epochs, cfg.patience, mean_baseline=base)
    assert good["usable"] and not good["collapsed"] and not good["no_better_than_mean"]
    assert good["best_val_loss"] < base
    # force a collapse: the bottleneck's weights to 0, so every vector gets the same code (its bias)
    with torch.no_grad():
        model.encoder[-1].weight.zero_()
    codes, _ = cae.encode_and_score(model, scaler, read, splits["test"])
    bad = cae.fit_diagnostics(curve, codes, cfg.max_epochs, cfg.patience, mean_baseline=base)
    assert bad["collapsed"] and not bad["usable"] and bad["status"].startswith("collapsed")
    # codes that move with depth but not between samples: collapsed over samples
    depth_only = codes.assign(z1=codes["sublayer_index"] * 1.0, z2=0.5 + 1e-7 * codes["sample"])
    assert cae.fit_diagnostics(curve, depth_only, cfg.max_epochs, cfg.patience)["collapsed"]
    # a loss spike, a validation loss no better than the mean, training still improving at max_epochs
    spiky = curve.assign(train_loss=[*curve["train_loss"][:5], 10 * curve["train_loss"].max(),
                                     *curve["train_loss"][6:]])
    d = cae.fit_diagnostics(spiky, codes, int(curve["epoch"].max()), 100, mean_baseline=0.0)
    assert d["loss_spikes"] == [6] and d["no_better_than_mean"] and d["unconverged"]
