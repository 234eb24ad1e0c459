"""§2.5 mutual information: analytic Gaussian MI, scipy reference vs fast estimator."""

from __future__ import annotations

import numpy as np
import pytest

from transformer_dynamics.mutual_info import gaussian_mi, mi_fast, mi_reference, mi_transitions

N = 1000


def fresh_seed() -> int:
    """A fresh seed per run, put in the failure messages to reproduce a miss."""
    return int(np.random.SeedSequence().entropy % 2**32)


def gaussian_pair(rng, rho, n=N):
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return z[:, 0], z[:, 1]


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.99])
def test_both_estimators_recover_gaussian_mi(rho):
    # The resubstitution KDE estimate of N=1000 Gaussian samples is biased upward by
    # 0.024-0.037 nats with a sampling sd of 0.002-0.026 nats (measured over 20 draws per rho),
    # so an unseeded draw exceeds the 0.05 tolerance now and then: the draw is seeded.
    rng = np.random.default_rng([7, int(rho * 100)])
    x, y = gaussian_pair(rng, rho)
    truth = gaussian_mi(rho)
    ref = mi_reference(x, y)
    fast = mi_fast(x[None], y[None])[0]
    assert ref == pytest.approx(truth, abs=0.05)
    assert fast == pytest.approx(truth, abs=0.05)
    assert fast == pytest.approx(ref, abs=0.01)


def non_gaussian_cases(rng):
    x = np.concatenate([rng.normal(-3, 1, N // 2), rng.normal(2, 0.5, N // 2)])
    yield "mixture", x, x**2 + rng.normal(0, 1, N)
    t = rng.standard_t(2, size=N)
    yield "student-t df=2", t, t + 0.5 * rng.standard_t(2, size=N)
    t = rng.standard_t(3, size=N)
    yield "student-t df=3", t, 0.8 * t + 0.3 * rng.standard_t(3, size=N)
    e = rng.exponential(size=N)
    yield "exponential", e, e + 0.2 * rng.normal(size=N)
    u = rng.uniform(-1, 1, N)
    yield "uniform, nonmonotone", u, np.sin(4 * u) + 0.1 * rng.normal(size=N)
    yield "independent lognormal", rng.lognormal(size=N), rng.lognormal(size=N)


def test_fast_agrees_with_reference_on_non_gaussian_data():
    # fresh inputs every run; the seed is in the failure message to reproduce a miss (about 1
    # in 300 student-t df=2 draws misses by ~0.013 nats, old and new estimator alike: an
    # extreme sample stretches the grid; docs/speed.md, MI)
    seed = fresh_seed()
    for name, x, y in non_gaussian_cases(np.random.default_rng(seed)):
        ref = mi_reference(x, y)
        fast = mi_fast(x[None], y[None])[0]
        assert fast == pytest.approx(ref, abs=0.01), f"{name} (seed {seed})"


def test_constant_units_give_zero_and_no_nan():
    rng = np.random.default_rng()
    x = rng.normal(size=N)
    c = np.full(N, 2.5)
    assert mi_reference(x, c) == 0.0
    out = mi_fast(np.stack([x, c, c]), np.stack([c, x, c]))
    assert np.array_equal(out, np.zeros(3))


def test_batched_transitions_equal_pairwise():
    rng = np.random.default_rng()
    a = rng.normal(size=(300, 5, 3)).cumsum(axis=1)
    a[:, :, 2] = 1.0
    src, dst = np.arange(4), np.arange(1, 5)
    got = mi_transitions(a, src, dst)
    for t in range(4):
        want = mi_fast(a[:, src[t], :].T, a[:, dst[t], :].T)
        np.testing.assert_allclose(got[t], want, atol=1e-9)
    assert (got[:, 2] == 0).all()


def point_mass_cases(rng):
    """Variables in which most samples share one value (layer 0 at the last token: 936 of
    1000 texts end in the same token), alone or on either side of the pair."""
    mass = np.where(rng.random(N) < 0.9, 0.37, rng.normal(size=N))
    yield "x has a point mass", mass, 0.8 * mass + 0.3 * rng.normal(size=N)
    yield "y has a point mass", rng.normal(size=N) + 2 * mass, mass
    two = np.where(rng.random(N) < 0.5, -1.0, np.where(rng.random(N) < 0.8, 2.0, rng.normal(size=N)))
    yield "two masses", two, np.tanh(two) + 0.2 * rng.normal(size=N)


def test_point_masses_agree_with_reference():
    rng = np.random.default_rng()
    for name, x, y in point_mass_cases(rng):
        ref = mi_reference(x, y)
        assert mi_fast(x[None], y[None])[0] == pytest.approx(ref, abs=0.01), name
        a = np.stack([x, y], axis=1)[:, :, None]  # (N, 2 sublayers, 1 unit)
        assert mi_transitions(a, np.array([0]), np.array([1]))[0, 0] == pytest.approx(ref, abs=0.01), name


def bfloat16(z: np.ndarray) -> np.ndarray:
    """``z`` rounded to bfloat16 (8 significant bits), as a store of a bfloat16 model holds it."""
    import torch

    return torch.from_numpy(np.asarray(z, dtype=np.float32)).to(torch.bfloat16).double().numpy()


def test_rounded_values_are_not_point_masses():
    # a bfloat16 store: most values repeat (8 significant bits), but each repeat is a small
    # part of the samples near it. Such rows take the binned KDE (the criterion before flagged
    # every one of them: 40x slower per pair), within 0.01 nats of scipy; a real point mass among them
    # (layer 0: most texts end in the same token) is still flagged and summed exactly
    import torch

    from transformer_dynamics.mutual_info.ties import _heavily_tied

    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    walks = rng.normal(size=(N, 3, 4)).cumsum(axis=1) + np.array([0.0, 1.0, 3.0, 30.0])  # offsets in sd
    a = bfloat16(walks)
    rows = torch.from_numpy(np.ascontiguousarray(a.transpose(1, 2, 0)).reshape(-1, N))
    srt = np.sort(rows.numpy(), axis=1)
    assert (srt[:, 1:] == srt[:, :-1]).sum(1).min() > 0.1 * N  # the old test flagged every row
    flagged = _heavily_tied(rows).numpy().reshape(3, 4)
    assert not flagged[:, :3].any(), (seed, flagged)  # offsets up to 3 sd: rounding only
    assert flagged[:, 3].all(), (seed, flagged)  # 30 sd: 1-3 values per bandwidth, summed exactly
    got = mi_transitions(a, np.arange(2), np.arange(1, 3))
    for t in range(2):
        for u in range(4):
            assert got[t, u] == pytest.approx(mi_reference(a[:, t, u], a[:, t + 1, u]), abs=0.01), (seed, t, u)
    mass = bfloat16(np.where(rng.random(N) < 0.6, 0.37, rng.normal(size=N)))
    assert _heavily_tied(torch.from_numpy(mass[None])).item(), seed
    y = bfloat16(0.8 * mass + 0.3 * rng.normal(size=N))
    assert mi_fast(mass[None], y[None])[0] == pytest.approx(mi_reference(mass, y), abs=0.01), seed


def test_coarse_lattices_agree_with_reference():
    # values rounded to a lattice of spacing c bandwidths: binned at c = 0.05 (many values
    # per bandwidth), summed exactly from c ~ 0.15 on; within 0.01 nats of scipy either way
    import torch

    from transformer_dynamics.mutual_info.ties import _heavily_tied

    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    h = N ** (-1 / 5)
    for c, exact in ((0.05, False), (0.35, True), (2.0, True)):
        x = rng.normal(size=(2, N))
        y = 0.7 * x + 0.7 * rng.normal(size=(2, N))
        x, y = (np.round(z / (c * h)) * c * h for z in (x, y))
        assert (_heavily_tied(torch.from_numpy(np.concatenate([x, y]))).numpy() == exact).all(), (seed, c)
        got = mi_fast(x, y)
        for i in range(2):
            assert got[i] == pytest.approx(mi_reference(x[i], y[i]), abs=0.01), (seed, c, i)


def test_heavy_tailed_blocks_agree_with_reference(monkeypatch):
    # fresh heavy-tailed blocks (t(2) random walks; Gaussian walks with 1 % of samples 100x):
    # their pairs are windowed and their tail samples summed directly (float32 differences,
    # clamped exponent) in 2-D and in 1-D; the spy checks that those paths ran
    import transformer_dynamics.mutual_info.direct_sum as mi  # where the tail sums call it

    calls = []
    real = mi._direct_density
    monkeypatch.setattr(mi, "_direct_density", lambda coords, *a, **k: calls.append(len(coords)) or real(coords, *a, **k))
    rng = np.random.default_rng()
    g = rng.normal(size=(N, 3, 3)).cumsum(axis=1)
    blocks = {"t(2) walks": rng.standard_t(2, size=(N, 3, 3)).cumsum(axis=1),
              "1 % outliers": np.where(rng.random((N, 1, 3)) < 0.01, 100 * g, g)}
    for name, a in blocks.items():
        got = mi_transitions(a, np.arange(2), np.arange(1, 3))
        for t in range(2):
            for u in range(3):
                assert got[t, u] == pytest.approx(mi_reference(a[:, t, u], a[:, t + 1, u]), abs=0.01), (name, t, u)
    assert 1 in calls and 2 in calls


@pytest.mark.parametrize("f", [1e3, 1e5])
def test_extreme_outliers_agree_with_reference(monkeypatch, f):
    # 1 % of the samples f x larger: they dominate the covariance, so the whitened bulk is
    # nearly a point at the grid's scale. At the usual spacing linear binning blurred it by
    # up to 0.05 nats of MI; such pairs now take a finer spacing on a window around the
    # medians, with the samples off it summed directly (the spy checks that path ran)
    import transformer_dynamics.mutual_info.grid as mi  # where the 2-D KDE calls it

    spacings = []
    real = mi._smooth_2d
    monkeypatch.setattr(mi, "_smooth_2d", lambda *a, **k: spacings.append(min(a[4], k["delta_v"])) or real(*a, **k))
    rng = np.random.default_rng()
    g = rng.normal(size=(N, 3, 4)).cumsum(axis=1)
    a = np.where(rng.random((N, 1, 4)) < 0.01, f * g, g)
    got = mi_transitions(a, np.arange(2), np.arange(1, 3))
    for t in range(2):
        for u in range(4):
            assert got[t, u] == pytest.approx(mi_reference(a[:, t, u], a[:, t + 1, u]), abs=0.01), (f, t, u)
    assert min(spacings) < N ** (-1 / 6) / 2 / 4  # the fine spacing (the usual one is h / 2)


@pytest.mark.parametrize("G, fine", [(48, 1), (128, 1), (208, 1), (160, 8)])
def test_banded_smoothing_equals_the_dense_product(G, fine):
    # K C Kv^T by tiles that skip the zeros outside the kernel's band (one dense product where
    # tiles would not pay: a narrow axis's kernel is 8x wider in cells) against the dense
    # float64 product, on fresh random grids
    import torch

    from transformer_dynamics.mutual_info.grid import _smooth_grids, _toeplitz_kernel

    seed = fresh_seed()
    h = N ** (-1 / 6)
    K, Kv = _toeplitz_kernel(G, h / 2, h), _toeplitz_kernel(G, h / 2 / fine, h)
    C = torch.from_numpy(np.random.default_rng(seed).random((3, G, G)).astype(np.float32))
    want = K[0].double() @ C.double() @ Kv[0].double().T
    got = _smooth_grids(K, C, Kv)
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-6 * float(want.abs().max()),
                               err_msg=f"seed {seed}")


@pytest.mark.parametrize("d", [1, 2])
def test_direct_density_equals_the_brute_force_sum(d):
    # exact KDE sums for selected samples, over all samples or, with sources, only theirs
    # (added), against numpy: rows with no, one, a few and all samples selected, rows with no
    # source, one and many; fewer sources than samples and the reverse; per-row and scalar
    # widths, a scale, float32 and float64 outputs, budgets from one chunk to one row per chunk
    import torch

    from transformer_dynamics.mutual_info.direct_sum import _direct_density

    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    B, n = 10, 60
    coords = tuple(torch.from_numpy(rng.standard_t(2, size=(B, n))) for _ in range(d))
    which = torch.from_numpy(rng.random((B, n)) < rng.uniform(0.05, 0.9, (B, 1)))
    which[0], which[1], which[2] = False, False, True  # none, one (below), all
    which[1, 7] = True
    sources = torch.from_numpy(rng.random((B, n)) < rng.uniform(0.05, 0.5, (B, 1)))
    sources[3], sources[4], sources[5] = False, False, True  # none, one (below), all
    sources[4, 11] = True
    scale = torch.from_numpy(rng.uniform(0.5, 2.0, B))
    z = np.stack([c.numpy() for c in coords], -1)  # (B, n, d)
    d2 = ((z[:, :, None, :] - z[:, None, :, :]) ** 2).sum(-1)  # (B, query, source)
    sel = which.numpy()
    for h in (torch.from_numpy(rng.uniform(0.2, 2.0, B)), 0.7):
        hh = (h.numpy() if torch.is_tensor(h) else np.full(B, h))[:, None, None]
        terms = np.exp(-0.5 * d2 / hh**2) / (n * (2 * np.pi) ** (d / 2) * hh**d) * scale.numpy()[:, None, None]
        for dtype in (torch.float64, torch.float32):
            base = torch.from_numpy(rng.random((B, n))).to(dtype)
            for budget in (1 << 22, 3000, 1):
                msg = f"seed {seed}, h {'per row' if torch.is_tensor(h) else h}, {dtype}, budget {budget}"
                got = _direct_density(coords, h, which, base, scale=scale, budget=budget).double().numpy()
                np.testing.assert_allclose(got[sel], terms.sum(-1)[sel], rtol=2e-5, err_msg=msg)
                np.testing.assert_array_equal(got[~sel], base.double().numpy()[~sel], err_msg=msg)
                got = _direct_density(coords, h, which, base, scale=scale, budget=budget,
                                      sources=sources).double().numpy()
                added = (terms * sources.numpy()[:, None, :]).sum(-1)
                tol = 2e-5 if dtype == torch.float64 else 2e-6
                np.testing.assert_allclose(got[sel], base.double().numpy()[sel] + added[sel], rtol=tol,
                                           atol=tol, err_msg=msg)
                np.testing.assert_array_equal(got[~sel], base.double().numpy()[~sel], err_msg=msg)


def kde_at_samples_exact(x, y=None):
    """scipy's gaussian_kde (Scott's rule) at the samples: the sums the fast estimator approximates."""
    from scipy.stats import gaussian_kde

    z = np.vstack([x, y]) if y is not None else x[None]
    return gaussian_kde(z)(z)


def test_windowed_densities_equal_the_exact_sum_sample_by_sample():
    # heavy-tailed pairs and rows take the windowed paths: the samples off a grid are summed
    # directly (far ones over the off-grid samples only), the samples on it near its edges
    # read the grid plus the off-grid samples' terms. Sample by sample against the exact sum:
    # - t(2) walks (windows over the central 99 %): every sample within 25 % (binning blurs an
    #   isolated sample), each row's mean error under 1 %;
    # - a few samples 100x, 1e4x, 300x (narrow bulks, fine grids): every sample within 0.2 %
    #   in 2-D (without the off-grid terms on the grid's rim the t(3) row is off by 0.5-2 %)
    #   and 2 % in 1-D (an isolated sample binned on a window), the outliers off the 2-D grids
    #   to float32 rounding
    import torch

    from transformer_dynamics.mutual_info.grid import _kde_1d_at_samples, _kde_2d_at_samples

    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(N, 3, 2)).cumsum(axis=1)
    out = rng.random(N) < 0.03  # 3 % of the samples 100x or 1e4x
    t3 = rng.standard_t(3, size=(N, 2)).cumsum(axis=1)
    o3 = rng.random(N) < 0.01  # a t(3) bulk (samples just off its grid) with 1 % 300x
    xs = [rng.standard_t(2, size=N).cumsum(), rng.standard_t(2, size=N), np.where(out, 100 * g[:, 0, 0], g[:, 0, 0]),
          np.where(out, 1e4 * g[:, 1, 1], g[:, 1, 1]), np.where(o3, 300 * t3[:, 0], t3[:, 0])]
    ys = [xs[0] + rng.standard_t(2, size=N), rng.standard_t(2, size=N) * 3, np.where(out, 100 * g[:, 1, 0], g[:, 1, 0]),
          np.where(out, 1e4 * g[:, 2, 1], g[:, 2, 1]), np.where(o3, 300 * t3[:, 1], t3[:, 1])]
    x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
    # outliers off the 2-D grids (which cover 8 interquartile ranges of the bulk): exact sums
    off = [out & (np.abs(g[:, 0, 0]) > 0.3) & (np.abs(g[:, 1, 0]) > 0.3),
           out & (np.abs(g[:, 1, 1]) > 0.3) & (np.abs(g[:, 2, 1]) > 0.3)]
    for name, got, want in [
        ("2-D", _kde_2d_at_samples(x, y).numpy(), np.stack([kde_at_samples_exact(a, b) for a, b in zip(xs, ys)])),
        ("1-D", _kde_1d_at_samples(y, 512).numpy(), np.stack([kde_at_samples_exact(b) for b in ys])),
    ]:
        rel = np.abs(got / want - 1)
        assert rel[:2].max() < 0.25, (name, seed, np.unravel_index(rel[:2].argmax(), rel[:2].shape), rel[:2].max())
        assert rel[:2].mean(1).max() < 0.01, (name, seed, rel[:2].mean(1))
        assert rel[2:].max(1).max() < (2e-3 if name == "2-D" else 0.02), (name, seed, rel[2:].max(1))
        if name == "2-D":
            for row, f in zip((2, 3), off):
                assert f.sum() >= 3, (seed, row, f.sum())
                assert rel[row, f].max() < 1e-5, (name, seed, row, rel[row, f].max())


def test_mi_progress_lines_change_no_number(capsys):
    from transformer_dynamics.progress import set_terminal

    a = np.random.default_rng(41).normal(size=(200, 3, 4))
    set_terminal(None, "unit_block_stats m/000")
    try:
        quiet = mi_transitions(a, np.arange(2), np.arange(1, 3), batch=3)
        loud = mi_transitions(a, np.arange(2), np.arange(1, 3), batch=3, progress=True)
    finally:
        set_terminal(None, "")
    np.testing.assert_array_equal(quiet, loud)
    err = capsys.readouterr().err
    assert "[unit_block_stats m/000] MI pair batch 1/3 (33%)" in err and "MI pair batch 3/3 (100%)" in err
