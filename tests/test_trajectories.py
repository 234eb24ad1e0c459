"""§2.7-2.8: PCA against sklearn, CAE architecture/training/determinism, perturbations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from transformer_dynamics import autoencoder as cae
from transformer_dynamics import pca as P
from transformer_dynamics import perturb
from transformer_dynamics.capture import sublayer_labels

from conftest import make_tiny_model, random_sequences


def test_global_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng()
    rs = rng.normal(size=(40, 6, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12)
    res = P.fit_pca([rs[:15], rs[15:]], n_components=12)
    sk = PCA().fit(rs.reshape(-1, 12))
    np.testing.assert_allclose(res.mean, sk.mean_, atol=1e-10)
    np.testing.assert_allclose(res.explained_variance_ratio, sk.explained_variance_ratio_, atol=1e-10)
    np.testing.assert_allclose(res.singular_values, sk.singular_values_, rtol=1e-8)
    for k in range(12):
        assert abs(abs(res.components[k] @ sk.components_[k]) - 1) < 1e-8  # equal up to sign
    Z = res.transform(rs, 3)
    np.testing.assert_allclose(np.abs(Z), np.abs(sk.transform(rs.reshape(-1, 12))[:, :3].reshape(40, 6, 3)), atol=1e-8)
    np.testing.assert_allclose(res.inverse(res.transform(rs, 12)), rs, atol=1e-8)


def test_per_sublayer_spectra_match_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng()
    rs = rng.normal(size=(30, 4, 8)) * np.array([1, 2, 5, 10, 1, 1, 1, 1])
    spec = P.per_sublayer_spectra([rs[:10], rs[10:]], sublayer_labels(2), max_components=5)
    for s in range(4):
        sk = PCA().fit(rs[:, s])
        got = spec[spec.sublayer_index == s]
        np.testing.assert_allclose(got["explained_variance_ratio"], sk.explained_variance_ratio_[:5], atol=1e-10)
    n90 = P.n_components_for(spec, 0.9)
    assert len(n90) == 4 and n90["n_pcs_90"].between(1, 5).all() | n90["n_pcs_90"].isna().any()


def test_per_sublayer_spectra_gram_route_when_fewer_samples_than_units():
    """n < D (the paper's N = 1000 at width 4096): the n x n Gram route equals sklearn and the
    D x D scatter route."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng()
    rs = rng.normal(size=(25, 3, 40)) * rng.uniform(0.1, 5, size=40) + rng.normal(size=40) * 3
    labels = [f"s{i}" for i in range(3)]
    gram = P.per_sublayer_spectra([rs[:7], rs[7:]], labels, max_components=30, n_samples=25)
    scatter = P.per_sublayer_spectra([rs[:7], rs[7:]], labels, max_components=30)
    assert len(gram) == 3 * 24  # at most n - 1 nonzero components
    np.testing.assert_allclose(gram["cumulative"], scatter["cumulative"], atol=1e-10)
    for s in range(3):
        sk = PCA().fit(rs[:, s])
        got = gram[gram.sublayer_index == s]
        np.testing.assert_allclose(got["explained_variance_ratio"], sk.explained_variance_ratio_[:24], atol=1e-10)
    assert P.sublayer_group_size(25, 40, 1) == int(1e6 // (8 * 40 * 25))
    assert P.sublayer_group_size(1000, 40, 1) == int(1e6 // (8 * 40 * 40))


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
    read = cae.store_reader(ArrayStore(rs), chunk=8)
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


def test_cae_in_memory_reader_trains_exactly_as_streaming():
    rs = toy_trajectories()
    splits = cae.split_samples(60, [0.6, 0.2, 0.2], seed=1)
    cfg = cae.CAEConfig(k=4, max_epochs=5, patience=8, batch_size=32, seed=3)
    reads = {"stream": ArrayStore(rs), "memory": ArrayStore(rs)}
    curves = {}
    for name, arr in reads.items():
        read = cae.store_reader(arr, chunk=8, in_memory_mb=0 if name == "stream" else 100)
        model, _, curves[name] = cae.train_cae(read, splits, 10, cfg, progress=False)
    pd.testing.assert_frame_equal(curves["stream"].drop(columns="seconds"), curves["memory"].drop(columns="seconds"))
    assert reads["memory"].reads == 1 and reads["stream"].reads > 5 * 8  # one read vs chunks every epoch


def test_explained_variance_definitions():
    # a perfect model gives 1 for both; predicting the sublayer mean gives r2_within = 0
    rs = toy_trajectories(n=20, S=3, D=4)

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Identity()
            self.decoder = nn.Identity()

    read = cae.store_reader(ArrayStore(rs), chunk=5)
    _, ev = cae.encode_and_score(Identity(), cae.Scaler("none"), read, np.arange(20))
    np.testing.assert_allclose(ev["explained_variance"], 1)
    np.testing.assert_allclose(ev["r2_within"], 1)


def test_default_perturbation_layers():
    assert perturb.default_layers(32) == [0, 7, 15, 23, 31]
    assert perturb.default_layers(30) == [0, 7, 14, 22, 29]


def _pca_for(model, seqs):
    from transformer_dynamics.capture import capture_last_token

    rs = np.concatenate([r for _, r in capture_last_token(model, seqs)])
    return P.fit_pca([rs], 10), rs


def test_teleport_to_own_residual_reproduces_control_and_leaves_earlier_layers():
    model = make_tiny_model("llama", seed=21)
    rng = np.random.default_rng(4)
    prompt = random_sequences(rng, 1, lo=8, hi=9)[0]
    pca, _ = _pca_for(model, random_sequences(rng, 20))
    from transformer_dynamics.capture import capture_last_token

    control = next(iter(capture_last_token(model, [prompt])))[1][0]
    for layer in (0, 1, 2):
        same = perturb.run_edited(model, prompt, layer, np.stack([control[2 * layer]] * 3))
        np.testing.assert_allclose(same, np.broadcast_to(control, same.shape), atol=1e-5)
        rows = rng.normal(size=(4, 32)) * 3
        moved = perturb.run_edited(model, prompt, layer, rows)
        np.testing.assert_allclose(moved[:, : 2 * layer], np.broadcast_to(control[: 2 * layer], (4, 2 * layer, 32)), atol=1e-6)
        np.testing.assert_allclose(moved[:, 2 * layer], rows, atol=1e-5)
        m = perturb.trajectory_metrics(moved, control, pca, 2 * layer)
        assert m["sublayer_index"].iloc[0] == 2 * layer and (m["mse_full"] > 0).all()
        m0 = perturb.trajectory_metrics(same, control, pca, 2 * layer)
        assert m0["mse_full"].max() < 1e-9


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "gpt2"])
def test_cached_prefix_perturbation_equals_full_recomputation(arch):
    """Running only the edited last token against the prompt's cached keys/values gives the
    trajectories of running every full copy of the prompt (float32 rounding apart)."""
    model = make_tiny_model(arch, seed=8)
    rng = np.random.default_rng(9)
    prompt = random_sequences(rng, 1, lo=10, hi=11)[0]
    for layer in (0, 1, 2):
        for mode in ("replace", "add"):
            rows = rng.normal(size=(6, 32)) * 2
            full = perturb.run_edited(model, prompt, layer, rows, mode, reuse_prefix=False)
            cached = perturb.run_edited(model, prompt, layer, rows, mode, reuse_prefix=True)
            assert cached.shape == full.shape == (6, 6, 32)
            np.testing.assert_allclose(cached, full, rtol=0, atol=1e-5 * np.abs(full).max())
            assert np.abs(cached[:, 2 * layer:] - cached[0, 2 * layer:]).max() > 0  # the rows differ


def test_perturbation_with_padding_and_other_rows_in_batch():
    # the edit hits the last real token of each row even when rows are padded to different lengths
    from transformer_dynamics.capture import capture_last_token

    model = make_tiny_model("qwen2", seed=2)
    rng = np.random.default_rng(5)
    seqs = random_sequences(rng, 5)
    target = rng.normal(size=32).astype(np.float32)
    edits = {1: lambda h: torch.as_tensor(target).expand_as(h)}
    batched = np.concatenate([r[np.argsort(i)] for i, r in capture_last_token(model, seqs, max_batch=5, edits=edits)])
    order = np.concatenate([i for i, _ in capture_last_token(model, seqs, max_batch=5, edits=edits)])
    single = np.stack([next(iter(capture_last_token(model, [s], edits=edits)))[1][0] for s in seqs])
    np.testing.assert_allclose(batched, single[np.sort(order)], atol=1e-5)
    np.testing.assert_allclose(single[:, 2], np.broadcast_to(target, (5, 32)), atol=1e-6)


def test_noise_and_swap_rows():
    rng = np.random.default_rng(0)
    control = rng.normal(size=(6, 16))
    pca = P.fit_pca([rng.normal(size=(30, 6, 16))], 4)
    rows, mode, _ = perturb.perturbation_rows("noise", 1, control, pca, None, None, 3, 7, 0.5, seed=0)
    assert mode == "add" and rows.shape == (7, 16)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 0.5 * np.linalg.norm(control[2]))
    pool = rng.normal(size=(20, 16))
    rows, mode, _ = perturb.perturbation_rows("swap", 1, control, pca, None, pool, 3, 7, 0.5, seed=0)
    assert mode == "replace" and all(any(np.allclose(r, q) for q in pool) for r in rows)
    scores = rng.normal(size=(50, 2))
    rows, mode, Z = perturb.perturbation_rows("teleport", 1, control, pca, scores, None, 3, 7, 0.5, seed=0)
    assert rows.shape == (9, 16) and np.allclose(Z.min(0), scores.min(0)) and np.allclose(Z.max(0), scores.max(0))
    np.testing.assert_allclose(pca.transform(rows, 2), Z, atol=1e-8)
