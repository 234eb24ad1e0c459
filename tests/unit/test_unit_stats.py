"""§2.2-2.4 statistics against numpy/scipy on fresh random arrays."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from transformer_dynamics import unit_stats
from transformer_dynamics.sublayers import sublayer_labels


def test_transition_table_types():
    tr = unit_stats.transition_table(sublayer_labels(3))
    assert len(tr) == 5
    assert list(tr["type"]) == ["within", "cross", "within", "cross", "within"]
    assert list(tr["from_sublayer"][:2]) == ["L00.attn", "L00.mlp"]
    allp = unit_stats.transition_table(sublayer_labels(3), "all")
    assert len(allp) == 15 and (allp["src"] < allp["dst"]).all()
    assert (allp["type"] == "skip").sum() == 10


def test_pearson_matches_scipy_and_constant_units_are_nan():
    rng = np.random.default_rng()
    a = rng.normal(size=(200, 6, 5)).cumsum(axis=1)
    a[:, :, 4] = 3.0
    tr = unit_stats.transition_table(sublayer_labels(3), "all")
    r = unit_stats.pearson(a, tr["src"].to_numpy(), tr["dst"].to_numpy())
    for t, (i, j) in enumerate(zip(tr["src"], tr["dst"])):
        for u in range(4):
            assert r[t, u] == pytest.approx(stats.pearsonr(a[:, i, u], a[:, j, u])[0], abs=1e-10)
    assert np.isnan(r[:, 4]).all()


def test_means_and_vector_stats_match_numpy():
    rng = np.random.default_rng()
    rs = rng.normal(size=(50, 4, 7)) + 1.0
    labels = sublayer_labels(2)
    m = unit_stats.unit_means(rs[:, :, 2:5], labels, u0=2)
    row = m[(m.unit == 3) & (m.sublayer == "L01.attn")].iloc[0]
    assert row["mean"] == pytest.approx(rs[:, 2, 3].mean()) and row["sd"] == pytest.approx(rs[:, 2, 3].std(ddof=1))
    tr, sub = unit_stats.vector_stats([rs[:20], rs[20:]], labels)
    cos = np.array([[1 - __import__("scipy.spatial.distance", fromlist=["cosine"]).cosine(rs[n, t], rs[n, t + 1])
                     for t in range(3)] for n in range(50)])
    vel = np.linalg.norm(rs[:, 1:] - rs[:, :-1], axis=2)
    np.testing.assert_allclose(tr["cosine_mean"], cos.mean(0), rtol=1e-10)
    np.testing.assert_allclose(tr["velocity_sd"], vel.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(tr["velocity_q50"], np.median(vel, 0), rtol=1e-10)
    np.testing.assert_allclose(sub["norm_mean"], np.linalg.norm(rs, axis=2).mean(0), rtol=1e-10)


def test_correlation_distribution_integrates_to_one():
    rng = np.random.default_rng()
    r = np.tanh(rng.normal(size=(30, 4)))
    d = unit_stats.correlation_distribution(r, u0=10)
    for u, g in d.groupby("unit"):
        assert ((g.bin_hi - g.bin_lo) * g.density).sum() == pytest.approx(1.0)
    assert sorted(d.unit.unique()) == [10, 11, 12, 13]


def test_block_fan_out_equals_single_block():
    rng = np.random.default_rng()
    a = rng.normal(size=(120, 6, 10)).cumsum(axis=1)
    labels = sublayer_labels(3)
    whole = unit_stats.block_unit_table(a, labels, 0, mi_grid=64)
    parts = [unit_stats.block_unit_table(a[:, :, s:e], labels, s, mi_grid=64) for s, e in ((0, 4), (4, 10))]
    import pandas as pd

    joined = pd.concat(parts).sort_values(["transition", "unit"]).reset_index(drop=True)
    whole = whole.sort_values(["transition", "unit"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("pairs", ["consecutive", "all"])
def test_unit_block_tables_compute_r_once_and_agree_with_the_parts(pairs):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(80, 6, 5)).cumsum(axis=1)
    labels = sublayer_labels(3)
    t = unit_stats.unit_block_tables(a, labels, 7, mi_grid=64, correlation_pairs=pairs)
    import pandas as pd

    pd.testing.assert_frame_equal(t["units"], unit_stats.block_unit_table(a, labels, 7, mi_grid=64), rtol=1e-12)
    pd.testing.assert_frame_equal(t["means"], unit_stats.unit_means(a, labels, 7))
    tr = unit_stats.transition_table(labels, pairs)
    r = unit_stats.pearson(a, tr["src"].to_numpy(), tr["dst"].to_numpy())
    pd.testing.assert_frame_equal(t["rdist"], unit_stats.correlation_distribution(r, 7))
    assert len(tr) == (5 if pairs == "consecutive" else 15)
