"""§2.8 PCA (Fig 4A-C): the streamed global PCA and per-sublayer spectra against sklearn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transformer_dynamics import pca as P
from transformer_dynamics.sublayers import sublayer_labels


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


class ChunkedStore:
    """An in-memory stand-in for an ActivationStore: what :func:`pca.pca_tables` reads."""

    def __init__(self, rs, chunk):
        self.rs, self.sample_chunk = rs, chunk
        self.n_samples, self.d_model = rs.shape[0], rs.shape[2]
        self.labels = sublayer_labels(rs.shape[1] // 2)
        self.rows_seen = set()

    def iter_samples(self, rows=None):
        step = rows or self.sample_chunk
        self.rows_seen.add(step)
        for s0 in range(0, self.n_samples, step):
            yield s0, self.rs[s0 : s0 + step]

    def chunks(self, sublayers=None, rows=None):
        for _, rs in self.iter_samples(rows):
            yield rs if sublayers is None else rs[:, sublayers]


def test_pca_tables_in_sublayer_groups_equal_one_pass():
    rng = np.random.default_rng(1)
    rs = rng.normal(size=(30, 8, 12)) @ rng.normal(size=(12, 12))
    st = ChunkedStore(rs, 7)
    res, one = P.pca_tables(st, 5, memory_mb=10)  # all 8 sublayers in one pass
    assert P.sublayer_group_size(30, 12, 10) >= 8
    tiny_budget = 8 * 12 * 12 * 3 / 1e6  # three sublayers per pass: groups of 3, 3, 2
    assert P.sublayer_group_size(30, 12, tiny_budget) == 3
    _, grouped = P.pca_tables(st, 5, memory_mb=tiny_budget)
    for name in one:
        pd.testing.assert_frame_equal(grouped[name], one[name], check_exact=False, rtol=1e-10)
    assert sorted(one["sublayer_spectra"]["sublayer_index"].unique()) == list(range(8))
    assert list(one["n_pcs"].columns) == ["sublayer_index", "sublayer", "n_pcs_90", "n_pcs_50"]
    np.testing.assert_allclose(one["spectrum"]["cumulative"], np.cumsum(res.explained_variance_ratio))
    assert len(one["trajectories"]) == 30 * 8
    assert P.update_rows(7) in st.rows_seen  # scatter matrices updated ~256 samples at a time


def test_the_torch_path_equals_the_numpy_path_and_sklearn():
    """pca.device: cuda runs the torch code; here the same code on the CPU against sklearn and
    the numpy path (global PCA, per-sublayer spectra by the scatter and the Gram route)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng()
    D = 16
    rs = rng.normal(size=(50, 4, D)) @ rng.normal(size=(D, D)) + rng.normal(size=D)
    res = P.fit_pca([rs[:20], rs[20:]], n_components=6, device="cpu")
    ref = P.fit_pca([rs[:20], rs[20:]], n_components=6)
    sk = PCA().fit(rs.reshape(-1, D))
    np.testing.assert_allclose(res.explained_variance_ratio, sk.explained_variance_ratio_[:6], atol=1e-10)
    np.testing.assert_allclose(res.singular_values, ref.singular_values, rtol=1e-10)
    np.testing.assert_allclose(res.mean, ref.mean, atol=1e-12)
    np.testing.assert_allclose(res.components, ref.components, atol=1e-8)  # the same signs (_sign_fix)
    labels = sublayer_labels(2)
    for n_samples in (None, 12):  # scatter route; Gram route (n < D)
        chunks = [rs[:12, :, :][:6], rs[:12][6:]] if n_samples else [rs[:20], rs[20:]]
        got = P.per_sublayer_spectra(chunks, labels, max_components=5, n_samples=n_samples, device="cpu")
        want = P.per_sublayer_spectra(chunks, labels, max_components=5, n_samples=n_samples)
        pd.testing.assert_frame_equal(got, want, rtol=1e-9, atol=1e-12)
