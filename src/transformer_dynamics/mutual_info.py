"""Mutual information between a unit's activations at consecutive sublayers (§2.5, Fig 1G-H).

The paper estimates ``MI(l, l+1) = sum p(x,y) log(p(x,y) / (p(x) p(y)))`` in nats with Gaussian
kernel density estimates over the N samples and adds 1e-10 inside the log. It does not say
where the densities are evaluated nor which bandwidth is used. We follow scipy's
``gaussian_kde`` conventions and evaluate the densities **at the samples themselves** (the
resubstitution estimator): the sum over ``p(x,y)`` becomes the sample mean, the Monte-Carlo
form of the expectation, which needs no grid whose resolution would have to follow the
bandwidth::

    MI = mean_i [ log(p_xy(x_i, y_i) + 1e-10) - log(p_x(x_i) p_y(y_i) + 1e-10) ]

with ``p_xy = gaussian_kde([x, y])`` (Scott's rule, full covariance: kernel covariance
``N^(-1/3) * cov(x, y)``) and ``p_x = gaussian_kde(x)``, ``p_y = gaussian_kde(y)`` (Scott's rule
in 1-D: bandwidth ``N^(-1/5) * sd``). :func:`mi_reference` is that formula written directly
with scipy; :func:`mi_fast` computes the same quantity for many unit pairs at once.

Fast estimator
--------------
In coordinates whitened by the pair's covariance the full-covariance kernel becomes isotropic
with width ``h = N^(-1/6)``, and an isotropic Gaussian is separable. So per pair we

1. linearly bin the whitened samples onto a ``G x G`` grid,
2. smooth with the Gaussian kernel, one axis after the other (two batched float32 GEMMs with
   the Toeplitz kernel matrix in 2-D, FFT convolution for the finer 1-D grids),
3. read the smoothed density back at each sample by bilinear interpolation,

and do the same in 1-D (finer grid) for the marginals. Linear binning and linear
interpolation each blur by a variance of ``delta^2/6``; the kernel's variance is reduced by
``delta^2/3`` to compensate. Everything is batched over all pairs of a unit block in torch.
A diagonal-bandwidth kernel would be faster still but badly underestimates MI at high
correlation, which is where residual-stream units live.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

EPS = 1e-10


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    sx, sy = np.std(x), np.std(y)
    if sx == 0 or sy == 0 or not np.isfinite(sx * sy):
        return True
    r = np.corrcoef(x, y)[0, 1]
    return bool(1 - r * r < 1e-12)


def mi_reference(x: np.ndarray, y: np.ndarray) -> float:
    """MI in nats from ``scipy.stats.gaussian_kde`` densities evaluated at the samples.

    Parameters
    ----------
    x, y : ndarray, shape (n_samples,)

    Returns 0.0 for a constant ``x`` or ``y`` (no information), and NaN for an exactly
    collinear pair (infinite MI; the KDE is singular).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    if _degenerate(x, y):
        return float("nan")
    xy = np.vstack([x, y])
    pxy = stats.gaussian_kde(xy)(xy)
    px = stats.gaussian_kde(x)(x)
    py = stats.gaussian_kde(y)(y)
    return float(np.mean(np.log(pxy + EPS) - np.log(px * py + EPS)))


def _lin_bin_1d(u: torch.Tensor, lo: torch.Tensor, delta: torch.Tensor, G: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid index of the left neighbour and the weight of the right one, per value."""
    pos = (u - lo[:, None]) / delta[:, None]
    i0 = pos.floor().clamp(0, G - 2)
    return i0.long(), (pos - i0).clamp(0, 1)


def _gauss_lags(G: int, delta: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel weights at lags 0..G-1 grid steps, ``(B, G)``, for widths ``bw``."""
    d = torch.arange(G, dtype=delta.dtype, device=delta.device)
    s2 = (bw / delta) ** 2  # kernel variance in grid steps^2
    return torch.exp(-0.5 * d[None] ** 2 / s2[:, None]) / torch.sqrt(2 * np.pi * s2)[:, None]


def _smooth(C: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """Convolve ``C (B, ..., G, ...)`` along ``dim`` with symmetric per-row kernels ``k (B, G)``.

    Circular FFT convolution of length 2G with the kernel wrapped symmetrically: for grid
    indices i, j < G the lag (i - j) mod 2G never aliases, so this is the exact linear
    convolution restricted to the grid.
    """
    B, G = k.shape
    n = 2 * G
    kc = torch.zeros(B, n, dtype=k.dtype, device=k.device)
    kc[:, :G] = k
    kc[:, G + 1 :] = k.flip(1)[:, :-1]
    Kf = torch.fft.rfft(kc, n=n)
    shape = [B] + [1] * (C.dim() - 1)
    shape[dim] = Kf.shape[1]
    Cf = torch.fft.rfft(C, n=n, dim=dim)
    out = torch.fft.irfft(Cf * Kf.view(shape), n=n, dim=dim)
    return out.narrow(dim, 0, G)

def _kde_1d_at_samples(v: torch.Tensor, G: int) -> torch.Tensor:
    """1-D Scott-rule KDE of each row of ``v (B, N)`` evaluated at its own samples, (B, N)."""
    B, N = v.shape
    sd = v.std(dim=1, unbiased=True)
    h = sd * N ** (-1.0 / 5.0)
    lo = v.min(dim=1).values - 4 * h
    hi = v.max(dim=1).values + 4 * h
    delta = (hi - lo) / (G - 1)
    bw = torch.sqrt(torch.clamp(h**2 - delta**2 / 3, min=(0.25 * h) ** 2))
    i0, w = _lin_bin_1d(v, lo, delta, G)
    counts = torch.zeros(B, G, dtype=v.dtype, device=v.device)
    counts.scatter_add_(1, i0, 1 - w)
    counts.scatter_add_(1, i0 + 1, w)
    smooth = _smooth(counts, _gauss_lags(G, delta, bw), 1) / (N * delta[:, None])
    return smooth.gather(1, i0) * (1 - w) + smooth.gather(1, i0 + 1) * w


def _kde_2d_at_samples(x: torch.Tensor, y: torch.Tensor, G: int) -> torch.Tensor:
    """2-D Scott-rule full-covariance KDE of each pair evaluated at its samples, (B, N)."""
    B, N = x.shape
    mx, my = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    xc, yc = x - mx, y - my
    sxx = (xc * xc).sum(1) / (N - 1)
    syy = (yc * yc).sum(1) / (N - 1)
    sxy = (xc * yc).sum(1) / (N - 1)
    # Cholesky of [[sxx, sxy], [sxy, syy]]: L = [[a, 0], [b, c]]
    a = torch.sqrt(sxx)
    b = sxy / a
    c = torch.sqrt(torch.clamp(syy - b * b, min=1e-300))
    u = xc / a[:, None]
    v = (yc - b[:, None] * u) / c[:, None]
    h = N ** (-1.0 / 6.0)
    lo_u = u.min(1).values - 4 * h
    lo_v = v.min(1).values - 4 * h
    span = torch.maximum(u.max(1).values - lo_u, v.max(1).values - lo_v) + 4 * h
    delta = span / (G - 1)
    hh = torch.full_like(delta, h)
    bw = torch.sqrt(torch.clamp(hh**2 - delta**2 / 3, min=(0.25 * h) ** 2))
    iu, wu = _lin_bin_1d(u, lo_u, delta, G)
    iv, wv = _lin_bin_1d(v, lo_v, delta, G)
    counts = torch.zeros(B, G * G, dtype=x.dtype, device=x.device)
    for du, wa in ((0, 1 - wu), (1, wu)):
        for dv, wb in ((0, 1 - wv), (1, wv)):
            counts.scatter_add_(1, (iu + du) * G + (iv + dv), wa * wb)
    k = _gauss_lags(G, delta, bw).to(torch.float32)
    lag = (torch.arange(G)[:, None] - torch.arange(G)[None, :]).abs().to(x.device)
    K = k[:, lag]  # (B, G, G) Toeplitz: two batched GEMMs beat FFTs at this size
    C = counts.view(B, G, G).to(torch.float32)
    S = torch.bmm(torch.bmm(K, C), K.transpose(1, 2)).reshape(B, G * G)
    dens = torch.zeros_like(x)
    for du, wa in ((0, 1 - wu), (1, wu)):
        for dv, wb in ((0, 1 - wv), (1, wv)):
            dens += S.gather(1, (iu + du) * G + (iv + dv)).double() * wa * wb
    # grid normalisation and the Jacobian of the whitening
    return dens / (N * (delta**2) * a * c)[:, None]


@torch.inference_mode()
def mi_fast(x: np.ndarray, y: np.ndarray, grid: int = 128, grid_1d: int = 512, batch: int = 256) -> np.ndarray:
    """Batched MI in nats for many pairs: rows of ``x`` against rows of ``y``.

    Parameters
    ----------
    x, y : ndarray, shape (n_pairs, n_samples)
    grid : grid points per axis of the 2-D binned KDE
    grid_1d : grid points of the 1-D marginal KDEs
    batch : pairs per batched computation (memory: batch * grid^2 * 8 bytes)

    Returns
    -------
    ndarray, shape (n_pairs,): MI per pair; 0 for a constant row, NaN for a collinear pair.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    out = np.zeros(x.shape[0])
    sx, sy = x.std(1), y.std(1)
    ok = (sx > 0) & (sy > 0) & np.isfinite(sx) & np.isfinite(sy)
    idx = np.flatnonzero(ok)
    if len(idx):
        xc = x[idx] - x[idx].mean(1, keepdims=True)
        yc = y[idx] - y[idx].mean(1, keepdims=True)
        r = (xc * yc).sum(1) / np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
        collinear = 1 - r * r < 1e-12
        out[idx[collinear]] = np.nan
        idx = idx[~collinear]
    for s in range(0, len(idx), batch):
        sel = idx[s : s + batch]
        tx = torch.from_numpy(x[sel])
        ty = torch.from_numpy(y[sel])
        pxy = _kde_2d_at_samples(tx, ty, grid)
        px = _kde_1d_at_samples(tx, grid_1d)
        py = _kde_1d_at_samples(ty, grid_1d)
        mi = (torch.log(pxy + EPS) - torch.log(px * py + EPS)).mean(1)
        out[sel] = mi.numpy()
    return out


def gaussian_mi(rho: float) -> float:
    """Analytic MI of a bivariate Gaussian with correlation ``rho``: ``-0.5 log(1 - rho^2)``."""
    return float(-0.5 * np.log(1 - rho * rho))


@torch.inference_mode()
def mi_transitions(
    a: np.ndarray, src: np.ndarray, dst: np.ndarray, grid: int = 128, grid_1d: int = 512, batch: int = 256
) -> np.ndarray:
    """MI of every unit between sublayers ``src[t]`` and ``dst[t]``, for a block of units.

    Same numbers as :func:`mi_fast` on each pair, but each (sublayer, unit) marginal density
    is computed once and shared by the transitions that use it.

    Parameters
    ----------
    a : ndarray, shape (n_samples, n_sublayers, n_units)
    src, dst : int arrays, shape (n_transitions,)

    Returns
    -------
    ndarray, shape (n_transitions, n_units)
    """
    a = np.asarray(a, dtype=np.float64)
    N, S, U = a.shape
    rows = np.ascontiguousarray(a.transpose(1, 2, 0)).reshape(S * U, N)  # (sublayer*unit, N)
    sd = rows.std(1)
    ok = (sd > 0) & np.isfinite(sd)
    log_marg = np.zeros((S * U, N))
    idx = np.flatnonzero(ok)
    for s in range(0, len(idx), batch):
        sel = idx[s : s + batch]
        log_marg[sel] = torch.log(_kde_1d_at_samples(torch.from_numpy(rows[sel]), grid_1d)).numpy()
    src, dst = np.asarray(src), np.asarray(dst)
    ri = (src[:, None] * U + np.arange(U)[None]).ravel()
    rj = (dst[:, None] * U + np.arange(U)[None]).ravel()
    out = np.zeros(len(ri))
    good = ok[ri] & ok[rj]
    xc = rows[ri] - rows[ri].mean(1, keepdims=True)
    yc = rows[rj] - rows[rj].mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(1) / np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
    collinear = good & (1 - r * r < 1e-12)
    out[collinear] = np.nan
    todo = np.flatnonzero(good & ~collinear)
    for s in range(0, len(todo), batch):
        sel = todo[s : s + batch]
        pxy = _kde_2d_at_samples(torch.from_numpy(rows[ri[sel]]), torch.from_numpy(rows[rj[sel]]), grid).numpy()
        # log(px*py + eps) with px*py = exp(log px + log py)
        pxpy = np.exp(log_marg[ri[sel]] + log_marg[rj[sel]])
        out[sel] = (np.log(pxy + EPS) - np.log(pxpy + EPS)).mean(1)
    return out.reshape(len(src), U)
