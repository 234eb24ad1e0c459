"""The binned KDE at the samples: linear binning, separable Gaussian smoothing, interpolation.

1-D (:func:`_kde_1d_at_samples`, FFT smoothing on fine grids) and 2-D in whitened coordinates
(:func:`_kde_2d_at_samples`, one banded Toeplitz matrix per grid size, ``K C K^T`` as batched
GEMMs). Binning and interpolation blur by ``delta^2/6`` each; the kernel is narrowed by
``delta^2/3`` to compensate. Windows, fine spacings and point masses hand their samples to
:mod:`.direct_sum` and :mod:`.ties`. Together: within 0.01 nats of :func:`.reference.mi_reference`
on Gaussian, heavy-tailed, outlier and tied data (tests/unit/test_mutual_info.py).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .direct_sum import _off_grid_density
from .ties import _heavily_tied, _kde_2d_tied
from .whitening import _var, _whiten


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


def _kde_1d_at_samples(v: torch.Tensor, G: int, cells_per_h: float = 4.0, tied: torch.Tensor | None = None,
                       sd: torch.Tensor | None = None, fine: float = 8.0) -> torch.Tensor:
    """1-D Scott-rule KDE of each row of ``v (B, N)`` evaluated at its own samples, (B, N).

    A row whose range fits in ``G`` grid points at a spacing of at most ``h / cells_per_h``
    is binned whole. A heavy-tailed row is not stretched over a coarse grid: its grid keeps
    that spacing over a window of ``G`` points around the median: the samples beyond the
    window get their density by direct summation (:func:`_direct_density`), and the terms of
    those within the kernel's reach (5 h) are added to the samples inside it near its edges,
    so the cost does not grow with the tails. A row whose bulk is narrow next to that spacing
    (interquartile range under 2 cells: a few extreme samples dominate its variance, hence
    ``h``) gets a ``fine`` times finer spacing on that window (see :func:`_kde_2d_at_samples`).
    A row with point masses (``tied``, default :func:`_heavily_tied`) is summed exactly at its
    distinct values.
    """
    B, N = v.shape
    sd = torch.sqrt(_var(v)) if sd is None else sd  # ``sd``: the rows' standard deviations, if known
    h = sd * N ** (-1.0 / 5.0)
    vmin, vmax = torch.aminmax(v, dim=1)
    lo = vmin - 4 * h
    hi = vmax + 4 * h
    delta = (hi - lo) / (G - 1)
    capped = delta > h / cells_per_h
    cap_delta = h / cells_per_h
    wide = capped | ((vmax - vmin) > 64 * h)  # an ordinary row spans ~25 h: only wide rows can be narrow
    narrow = torch.zeros_like(capped)
    if wide.any():
        # interquartile range by a float32 sort (a threshold test: float32 is ample; numpy's
        # row sort is several times faster than a float64 multi-point selection)
        srt = np.sort(v[wide].numpy().astype(np.float32), axis=1)
        iqr = srt[:, int(0.75 * (N - 1))] - srt[:, int(0.25 * (N - 1))]
        narrow[wide] = torch.from_numpy(iqr.astype(np.float64)).to(h.dtype) < 2 * cap_delta[wide]
        cap_delta = torch.where(narrow, cap_delta / fine, cap_delta)
        capped |= narrow
    if capped.any():
        delta = torch.where(capped, cap_delta, delta)
        width = delta * (G - 1)
        centred = torch.zeros_like(lo)
        m = (N - 1) // 2  # the lower median (as torch.median), by selection, only where capped
        centred[capped] = torch.from_numpy(np.partition(v[capped].numpy(), m, axis=1)[:, m]).to(lo.dtype)
        centred = centred - width / 2
        # the window stays within the data's range, except a narrow row's: its short window
        # keeps the bulk in the middle (moved to the range's end, the bulk would be near
        # the window's edge and summed directly)
        clamped = torch.minimum(torch.maximum(centred, lo), hi - width)
        lo = torch.where(capped, torch.where(narrow, centred, clamped), lo)
    bw = torch.sqrt(torch.clamp(h**2 - delta**2 / 3, min=(0.25 * h) ** 2))
    i0, w = _lin_bin_1d(v, lo, delta, G)
    pos = (v - lo[:, None]) / delta[:, None]
    inside = ((pos >= 0) & (pos <= G - 1)).to(v.dtype)
    counts = torch.zeros(B, G, dtype=v.dtype, device=v.device)
    counts.scatter_add_(1, i0, (1 - w) * inside)
    counts.scatter_add_(1, i0 + 1, w * inside)
    smooth = _smooth(counts, _gauss_lags(G, delta, bw), 1) / (N * delta[:, None])
    dens = smooth.gather(1, i0) * (1 - w) + smooth.gather(1, i0 + 1) * w
    if capped.any():
        # the grid holds only the samples inside the window: the samples outside it are
        # summed directly, and the terms of those within reach of the window (5 kernel widths)
        # are added to the densities of the samples inside it within reach of its edges
        c = torch.nonzero(capped).flatten()
        dens[c] = _off_grid_density((v[c],), h[c], [pos[c]], G - 1, [delta[c, None]], dens[c])
    tied = _heavily_tied(v, sd=sd) if tied is None else tied
    for i in torch.nonzero(tied).flatten().tolist():  # a point mass: summed exactly
        vals, inv, cnt = np.unique(v[i].numpy(), return_inverse=True, return_counts=True)
        hi = float(h[i])
        k = np.exp(-0.5 * ((vals[:, None] - vals[None, :]) / hi) ** 2) @ cnt  # per unique value
        dens[i] = torch.from_numpy(k[inv.ravel()] / (N * math.sqrt(2 * math.pi) * hi)).to(dens.dtype)
    return dens


@functools.lru_cache(maxsize=64)
def _toeplitz_kernel(G: int, delta: float, h: float) -> tuple[torch.Tensor, int]:
    """(G, G) banded Toeplitz matrix of the Gaussian kernel of width ``h`` on a grid of spacing
    ``delta``, its width reduced by the blur of linear binning and interpolation, and its
    half-bandwidth ``r`` (entries more than ``r`` off the diagonal are 0). Cached: a block's
    pairs use a few grid sizes. The matrix is shared by every caller: **read only** (built
    outside inference mode, so callers in and out of it can use it)."""
    bw = math.sqrt(max(h * h - delta * delta / 3, (0.25 * h) ** 2))  # binning + interpolation blur
    r = int(math.ceil(4 * bw / delta))
    with torch.inference_mode(False), torch.no_grad():
        taps = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (taps * (delta / bw)) ** 2) * (delta / (math.sqrt(2 * math.pi) * bw))
        lag = (torch.arange(G)[:, None] - torch.arange(G)[None, :]).abs()
        K = torch.where(lag <= r, k[r + lag.clamp(max=r)], torch.zeros(()))
    return K, r


def _band_tiles(G: int, r: int, tile: int = 32) -> list[tuple[int, int, int, int]]:
    """Row tiles ``(t0, t1, w0, w1)`` of a product with a ``(G, G)`` matrix of half-bandwidth
    ``r``: output rows ``t0:t1`` need input rows ``w0:w1`` only. One tile (a dense product)
    when the windows would not save at least a quarter of the work."""
    if tile + 2 * r > 0.75 * G:
        return [(0, G, 0, G)]
    return [(t0, min(G, t0 + tile), max(0, t0 - r), min(G, t0 + tile + r)) for t0 in range(0, G, tile)]


def _smooth_grids(K: tuple[torch.Tensor, int], C: torch.Tensor, Kv: tuple[torch.Tensor, int]) -> torch.Tensor:
    """``K C Kv^T`` for a batch of grids ``C (B, G, G)`` and banded Toeplitz kernels (as
    returned by :func:`_toeplitz_kernel`): tiles of 32 output rows (columns) multiply only the
    rows (columns) within the band, so a grid of 128 cells costs ~40 % less than the dense
    product (float32 rounding differs at ~1e-7 relative: the same nonzero terms)."""
    G = C.shape[-1]
    (Ku, ru), (Kvm, rv) = K, Kv
    KvT = Kvm.T
    X = torch.cat([torch.matmul(C[:, :, w0:w1], KvT[w0:w1, t0:t1]) for t0, t1, w0, w1 in _band_tiles(G, rv)], 2)
    return torch.cat([torch.matmul(Ku[t0:t1, w0:w1], X[:, w0:w1]) for t0, t1, w0, w1 in _band_tiles(G, ru)], 1)


def _smooth_2d(u: torch.Tensor, v: torch.Tensor, lo_u: torch.Tensor, lo_v: torch.Tensor, delta: float, h: float,
               G: int, windowed: bool = True, delta_v: float | None = None) -> torch.Tensor:
    """Binned KDE density (up to 1/N and the Jacobian) at each sample, spacing ``delta``
    (``delta_v`` on the second axis, if given).

    ``windowed=False`` promises that every sample lies on the grid (a pair that is not capped
    to a window), which skips the mask of samples outside it.
    """
    B, N = u.shape
    delta_v = delta if delta_v is None else delta_v
    pu, pv = (u - lo_u[:, None]) / delta, (v - lo_v[:, None]) / delta_v
    iu, iv = pu.floor().clamp(0, G - 2), pv.floor().clamp(0, G - 2)
    wu, wv = (pu - iu).clamp(0, 1).float(), (pv - iv).clamp(0, 1).float()
    base = iu.long() * G + iv.long()
    # the four grid neighbours of each sample, side by side: (B, 4N) indices and weights
    idx = torch.cat([base, base + 1, base + G, base + (G + 1)], 1)
    w = torch.cat([(1 - wu) * (1 - wv), (1 - wu) * wv, wu * (1 - wv), wu * wv], 1)
    counts = torch.zeros(B, G * G, dtype=torch.float32)
    if windowed:
        inside = ((pu >= 0) & (pu <= G - 1) & (pv >= 0) & (pv <= G - 1)).float()
        counts.scatter_add_(1, idx, w * inside.repeat(1, 4))
    else:
        counts.scatter_add_(1, idx, w)
    K = _toeplitz_kernel(G, delta, h)
    Kv = K if delta_v == delta else _toeplitz_kernel(G, delta_v, h)
    S = _smooth_grids(K, counts.view(B, G, G), Kv)  # K C Kv^T, batched banded GEMMs
    dens = (S.view(B, G * G).gather(1, idx) * w).view(B, 4, N).sum(1)
    return dens.double() / (delta * delta_v)


def _kde_2d_at_samples(x: torch.Tensor, y: torch.Tensor, max_grid: int = 256, cells_per_h: float = 2.0,
                       tail: float = 0.005, tied: tuple[torch.Tensor, torch.Tensor] | None = None,
                       grid_budget: int = 1 << 22, grid_step: int = 16, fine: float = 8.0) -> torch.Tensor:
    """2-D Scott-rule full-covariance KDE of each pair evaluated at its samples, (B, N).

    In whitened coordinates every pair has the same isotropic kernel (width ``h = N^(-1/6)``),
    so with one grid spacing ``delta = h / cells_per_h`` for all pairs the smoothing is one
    shared separable Gaussian: ``K C K^T`` with the same Toeplitz K for every pair of a grid
    size, computed as batched GEMMs over all those pairs (``grid_budget`` grid cells per call;
    tiles that skip the zeros outside the kernel's band, :func:`_smooth_grids`). Each pair's grid starts at its own
    minimum and its size is its own extent rounded up to 16 cells, so a pair's result does
    not depend on which pairs share its batch.

    A heavy-tailed pair (its extent needs more than ``max_grid`` cells per axis, or more than
    twice the cells of the window that holds its central ``1 - 2 tail`` quantile range plus
    the kernel's reach) keeps the same spacing on that window; the samples outside it get
    their density by direct summation (:func:`_direct_density`; over the other samples off
    the window only, for those more than ``FAR`` widths from it: :func:`_tail_density`), and
    the terms of those within the kernel's reach (5 h) are added to the densities of the
    samples on the window near its edges. The cost is then set by the few tail samples, not
    by how far they lie. A pair in which ``x`` or ``y`` has point masses (``tied``: the
    :func:`_heavily_tied` flags of ``x`` and ``y``, computed when not given) is done by
    :func:`_kde_2d_tied`.

    A pair with a narrow bulk on an axis (the interquartile range of a whitened axis spans
    fewer than 2 cells: a few extreme samples dominate the covariance, so the bulk is nearly
    a point at the kernel's scale) gets a ``fine`` times finer spacing on that axis, on a
    window of 8 interquartile ranges around the medians. At the usual spacing, linear binning
    blurs such a bulk by an amount that depends on where it falls between grid points (up to
    0.05 nats of MI for random walks with 1 % of samples 1e4 x larger). The window has no
    margin for the kernel's reach: the samples off it are summed directly, and their terms
    are added to the densities of the samples on it, so it costs less than an ordinary grid.
    """
    B, N = x.shape
    u, v, jac, vxy = _whiten(x, y, with_var=True)
    collinear = jac * jac < 1e-12 * vxy  # 1 - r^2 < 1e-12: the KDE is singular
    if collinear.any():
        out = torch.full((B, N), float("nan"), dtype=x.dtype)
        if (~collinear).any():
            ok = ~collinear
            out[ok] = _kde_2d_at_samples(x[ok], y[ok], max_grid, cells_per_h, tail,
                                         None if tied is None else (tied[0][ok], tied[1][ok]))
        return out
    h = N ** (-1.0 / 6.0)
    (umin, umax), (vmin, vmax) = torch.aminmax(u, dim=1), torch.aminmax(v, dim=1)
    lo_u = umin - 4 * h
    lo_v = vmin - 4 * h
    span = torch.maximum(umax - lo_u, vmax - lo_v) + 4 * h
    delta = h / cells_per_h
    # grid size per pair, rounded up to a multiple of 16: pairs of one size share the GEMMs
    need = (torch.ceil(span / delta).long() + grid_step) // grid_step * grid_step
    # the window that holds the central (1 - 2 * tail) of each axis, with the kernel's reach
    # (5 h) on both sides: pairs whose full extent needs much more get that window, and their
    # tail samples are summed directly
    margin = 5 * h
    capped = torch.zeros(B, dtype=torch.bool)
    # narrow bulk (see the docstring): a finer spacing, per axis, on a window around the medians
    spacing = torch.full((B, 2), delta, dtype=x.dtype)  # (u, v) spacing of each pair's grid
    narrow = torch.zeros(B, dtype=torch.bool)
    cand = torch.nonzero(need > 64).flatten()  # an ordinary pair's bulk fills >= 8 cells: only wide pairs
    if len(cand):
        # interquartile ranges and medians by a float32 sort (a threshold test and a window
        # centre: float32 is ample; numpy's row sort is faster than a multi-point selection)
        srt = [np.sort(z[cand].numpy().astype(np.float32), axis=1) for z in (u, v)]
        q25, med, q75 = int(0.25 * (N - 1)), (N - 1) // 2, int(0.75 * (N - 1))
        iqr = torch.from_numpy(np.stack([z[:, q75] - z[:, q25] for z in srt], 1).astype(np.float64))
        nar_axis = iqr < 2 * delta  # (cand, 2); whitening often leaves only one axis narrow
        nar = nar_axis.any(1)
        if nar.any():
            sel = cand[nar]
            sp = torch.where(nar_axis[nar], torch.tensor(delta / fine, dtype=torch.float64),
                             torch.tensor(delta, dtype=torch.float64))
            cells = torch.ceil(8 * iqr[nar] / sp).long().amax(1)  # 8 interquartile ranges
            need[sel] = torch.clamp((cells + grid_step) // grid_step * grid_step, max=max_grid)
            spacing[sel] = sp
            keep = nar.numpy()
            for j, lo in enumerate((lo_u, lo_v)):
                lo[sel] = torch.from_numpy(srt[j][keep, med].astype(np.float64)) - sp[:, j] * (need[sel] - 1) / 2
            narrow[sel] = True
            cand = cand[~nar]
    if len(cand):
        k = int(tail * N) + 1  # order statistics k and N + 1 - k (partial selection, no sort)
        qu, qv = ((zc.topk(k, dim=1, largest=False).values[:, -1], zc.topk(k, dim=1).values[:, -1])
                  for zc in (u[cand], v[cand]))
        bulk = torch.maximum(qu[1] - qu[0], qv[1] - qv[0]) + 2 * margin
        window = (torch.ceil(bulk / delta).long() + grid_step) // grid_step * grid_step
        cap = (need[cand] > max_grid) | (need[cand] > 2 * window)
        if cap.any():
            sel = cand[cap]
            capped[sel] = True
            need[sel] = torch.minimum(window[cap], torch.full_like(window[cap], max_grid))
            width = delta * (need[sel] - 1)
            for lo, qz in ((lo_u, qu), (lo_v, qv)):
                lo[sel] = ((qz[0] + qz[1]) / 2)[cap] - width / 2
    tied_x, tied_y = tied if tied is not None else (_heavily_tied(x), _heavily_tied(y))
    binned = ~(tied_x | tied_y)  # point-mass pairs are done by _kde_2d_tied below
    capped &= binned
    narrow &= binned
    # A pair that is not capped needs its grid only where it has samples: all counts lie in
    # the data range, so the smoothed values there do not depend on the empty cells around it.
    # Its grid drops the whole cells below the first sample's cell (the origin moves by an
    # integer number of cells: the same binning weights) and ends one cell above the last.
    trim = max(0, int(math.floor(4 * h / delta)) - 1)
    full = ~capped & ~narrow
    lo_u = torch.where(full, lo_u + trim * delta, lo_u)
    lo_v = torch.where(full, lo_v + trim * delta, lo_v)
    fit = torch.ceil(torch.maximum(umax - lo_u, vmax - lo_v) / delta).long() + 2
    need = torch.where(full, (fit + grid_step - 1) // grid_step * grid_step, need)
    out = torch.empty(B, N, dtype=x.dtype)
    for du, dv in ((delta, delta), (delta / fine, delta), (delta, delta / fine), (delta / fine, delta / fine)):
        kind = binned & (spacing[:, 0] == du) & (spacing[:, 1] == dv)
        for G in torch.unique(need[kind]).tolist():
            sel = torch.nonzero((need == G) & kind).flatten()
            step = max(1, grid_budget // (G * G))  # pairs per smoothing call: bounded grid memory
            for s in range(0, len(sel), step):
                ss = sel[s : s + step]
                out[ss] = _smooth_2d(u[ss], v[ss], lo_u[ss], lo_v[ss], du, h, int(G),
                                     windowed=bool((capped | narrow)[ss].any()), delta_v=dv)
    out = out / (N * jac)[:, None]
    windowed = capped | narrow
    if windowed.any():
        # the grid holds the samples on it only: the samples off it are summed directly, and
        # the terms of those within reach of the grid (5 h, the kernel's reach, as elsewhere)
        # are added to the densities of the samples on it
        c = torch.nonzero(windowed).flatten()
        uc, vc = u[c], v[c]
        du, dv, top = spacing[c, 0, None], spacing[c, 1, None], (need[c] - 1)[:, None]
        pu, pv = (uc - lo_u[c, None]) / du, (vc - lo_v[c, None]) / dv
        out[c] = _off_grid_density((uc, vc), h, [pu, pv], top, [du, dv], out[c], scale=1 / jac[c])
    for i in torch.nonzero(~binned).flatten().tolist():  # point masses: see _kde_2d_tied
        a, b = (x[i], y[i]) if tied_x[i] else (y[i], x[i])
        out[i] = torch.from_numpy(_kde_2d_tied(a.numpy(), b.numpy(), h)).to(out.dtype)
    return out
