"""§2.6 rotation counts: closed forms, winding numbers, nulls, vectorised = loop."""

from __future__ import annotations

import numpy as np
import pytest

from transformer_dynamics import rotations as R


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("direction", [1, -1])
def test_circle_traversed_k_times(k, direction):
    n = 400
    t = np.linspace(0, 2 * np.pi * k, n + 1)
    r = R.path_rotations(np.cos(t), direction * np.sin(t))
    # tangent turns by 2*pi*k minus the one step between first and last tangent
    assert r == pytest.approx(direction * k * (1 - 1 / n), abs=1e-9)


def test_straight_line_and_zero_steps():
    x = np.array([0.0, 1, 1, 2, 3, 3, 3, 4])
    assert R.path_rotations(x, 2 * x) == 0.0
    assert R.path_rotations(np.zeros(5), np.zeros(5)) == 0.0
    # a square with a repeated corner: exactly one turn counter-clockwise less the last corner
    sx = np.array([0, 1, 1, 1, 0, 0.0])
    sy = np.array([0, 0, 0, 1, 1, 0.0])
    assert R.path_rotations(sx, sy) == pytest.approx(0.75)
    assert np.isfinite(R.rotation_count(np.ones((3, 10)))).all()


def test_wrapped_angle_sum_is_the_winding_number_of_the_tangent():
    rng = np.random.default_rng()
    for _ in range(20):
        x, y = rng.normal(size=(2, 30)).cumsum(axis=1)
        dx, dy = np.diff(x), np.diff(y)
        # winding via the unwrapped angle of the tangent: independent of our wrap code
        theta = np.unwrap(np.arctan2(dy, dx))
        assert R.path_rotations(x, y) == pytest.approx((theta[-1] - theta[0]) / (2 * np.pi))


def test_wrap_angle_range():
    d = np.array([-np.pi, np.pi, 3 * np.pi, -3 * np.pi + 1e-9, 0.1])
    w = R.wrap_angle(d)
    assert (w > -np.pi).all() and (w <= np.pi).all()
    np.testing.assert_allclose(np.cos(w), np.cos(d), atol=1e-12)


def loop_reference(a_units, perms, null):
    out = np.zeros(perms.shape[:2])
    for u in range(a_units.shape[0]):
        a = a_units[u]
        g = np.gradient(a)
        x, y = a - a[0], g - g[0]
        for k in range(perms.shape[1]):
            p = perms[u, k]
            if null == "points":
                xs, ys = x[p], y[p]
            else:
                sa = a[p]
                gs = np.gradient(sa)
                xs, ys = sa - sa[0], gs - gs[0]
            th = np.arctan2(np.diff(ys), np.diff(xs))
            d = np.diff(th)
            d = (d + np.pi) % (2 * np.pi) - np.pi
            d[d == -np.pi] = np.pi
            out[u, k] = d.sum() / (2 * np.pi)
    return out


@pytest.mark.parametrize("null", ["points", "activations"])
def test_vectorised_null_equals_plain_loop(null):
    rng = np.random.default_rng()
    a = rng.normal(size=(4, 16)).cumsum(axis=1)
    perms = np.stack([R.unit_permutations(u, 25, 16, seed=3) for u in range(4)])
    np.testing.assert_allclose(R.null_rotations(a, perms, null), loop_reference(a, perms, null), atol=1e-9)


def test_null_is_seeded_and_block_independent():
    rng = np.random.default_rng()
    a = rng.normal(size=(40, 12, 6)).cumsum(axis=1)
    whole = R.unit_rotation_table(a, 0, 50, "points", seed=7)
    parts = [R.unit_rotation_table(a[:, :, s:e], s, 50, "points", seed=7) for s, e in ((0, 2), (2, 6))]
    import pandas as pd

    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    other = R.unit_rotation_table(a, 0, 50, "points", seed=8)
    assert not np.allclose(other["null_mean"], whole["null_mean"])


def test_points_null_centres_on_zero_and_random_walk_scores_about_eleven():
    rng = np.random.default_rng(0)
    walk = rng.normal(size=(500, 64)).cumsum(axis=1)
    assert R.rotation_count(walk).mean() == pytest.approx(-11, abs=1.0)
    perms = np.stack([R.unit_permutations(u, 200, 64, seed=0) for u in range(20)])
    assert R.null_rotations(walk[:20], perms, "points").mean() == pytest.approx(0, abs=0.3)
    assert R.null_rotations(walk[:20], perms, "increments").mean() == pytest.approx(-11, abs=1.5)


def test_p_values_and_bh():
    null = np.random.default_rng(1).normal(size=(3, 999))
    p = R.empirical_p(np.array([0.0, 10.0, -10.0]), null)
    assert p[0] > 0.5 and p[1] == pytest.approx(1 / 1000) and p[2] == pytest.approx(1 / 1000)
    q = R.benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]))
    # sorted p .01 .03 .04 .5 -> p*n/rank .04 .06 .0533 .5 -> running min from the right
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.5])


def test_block_tables_draw_permutations_once_and_keep_the_first_nulls():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 10, 4)).cumsum(axis=1)
    t = R.rotation_block_tables(a, 5, 40, "points", "mean", seed=3, extra_nulls=("increments",), n_null_kept=6)
    import pandas as pd

    pd.testing.assert_frame_equal(t["table"], R.unit_rotation_table(a, 5, 40, "points", "mean", 3, ("increments",)))
    mean = a.mean(axis=0)
    assert list(t["traj"].columns) == ["unit", "sublayer_index", "a_mean"]
    np.testing.assert_array_equal(t["traj"]["a_mean"].to_numpy().reshape(4, 10), mean.T)
    # the kept null values are the first draws of each unit's own permutations (units 5..8)
    first = np.stack([R.unit_permutations(u, 40, 10, seed=3)[:6] for u in range(5, 9)])
    np.testing.assert_array_equal(t["null"]["R_null"].to_numpy(), R.null_rotations(mean.T, first, "points").ravel())
    np.testing.assert_array_equal(t["null"]["unit"].to_numpy(), np.repeat(np.arange(5, 9), 6))
    # gathered q-values are BH over all units, and the summary uses them
    table = R.add_q_values(t["table"].copy())
    np.testing.assert_array_equal(table["q_value"], R.benjamini_hochberg(table["p_value"].to_numpy()))
    np.testing.assert_array_equal(table["incr_q_value"], R.benjamini_hochberg(table["incr_p_value"].to_numpy()))
    assert R.rotation_summary(table) == R.rotation_summary(t["table"])
