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

This plug-in estimate is not bounded below by 0. Where a variable takes few distinct values
(layer 0 at the last token, where most texts end in one of a few tokens: 20 distinct values
per unit in the randomly initialised SmolLM2), the 2-D and 1-D Scott bandwidths smooth
those masses differently and the estimate is negative: -0.15 to -0.21 nats at the first
transition of the random-init model, equal to scipy's to 1e-4. Read it as "no measurable
information", not as an error.

Fast estimator
--------------
In coordinates whitened by the pair's covariance the full-covariance kernel becomes isotropic
with width ``h = N^(-1/6)``, and an isotropic Gaussian is separable. So per pair we

1. linearly bin the whitened samples onto a ``G x G`` grid,
2. smooth with the Gaussian kernel, one axis after the other (in 2-D one grid spacing for
   all pairs, so a single Toeplitz matrix K and ``K C K^T`` as batched GEMMs per grid size;
   FFT convolution for the finer 1-D grids),
3. read the smoothed density back at each sample by bilinear interpolation,

and do the same in 1-D (finer grid) for the marginals. Linear binning and linear
interpolation each blur by a variance of ``delta^2/6``; the kernel's variance is reduced by
``delta^2/3`` to compensate. Everything is batched over all pairs of a unit block in torch.
A diagonal-bandwidth kernel would be faster still but badly underestimates MI at high
correlation, which is where residual-stream units live.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

EPS = 1e-10


def mi_reference(x: np.ndarray, y: np.ndarray) -> float:
    """MI in nats from ``scipy.stats.gaussian_kde`` densities evaluated at the samples.

    Parameters
    ----------
    x, y : ndarray, shape (n_samples,)

    Returns 0.0 for a constant ``x`` or ``y`` (no information), and NaN for an exactly
    collinear pair (infinite MI; the KDE is singular).
    """
    from scipy import stats  # here, not at import: loading scipy.stats costs every job ~1 s

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    r = np.corrcoef(x, y)[0, 1]
    if 1 - r * r < 1e-12:  # collinear: the 2-D KDE is singular
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


def _heavily_tied(v: torch.Tensor, share: float = 0.1, dominance: float = 0.1,
                  sd: torch.Tensor | None = None, budget: int = 1 << 21) -> torch.Tensor:
    """Rows ``(B,)`` of ``v (B, N)`` with point masses that the binned KDE would blur: at
    least ``share`` of the samples repeat an earlier value, and at least ``share`` of the
    samples sit in repeated values that each hold at least ``dominance`` of the samples
    within one Scott bandwidth of them (1-D, ``h = sd N^(-1/5)``; ``sd``: the rows' standard
    deviations, if known). E.g. layer 0 at the last token, where most texts end in the same
    token (original) or in one of a few hundred tokens (shuffled). Their KDE is summed
    directly: binning blurs a point mass by an amount that depends on where it falls between
    grid points (errors of several 0.01 nats).

    Repeats that are only rounding do not count: a bfloat16 model's store holds values with
    8 significant bits, so most values repeat, but near a value there are many others at the
    kernel's scale; such repeats fall at every offset between grid points and their binning
    errors average out as those of distinct values do (within 1.2e-3 nats of scipy even for
    lattices two bandwidths coarse: docs/speed.md). The first criterion alone (any ``share``
    of repeats) flagged every row of a bfloat16 store, and its MI was 40x slower per pair.
    ``dominance = 0.1`` flags rows rounded to a lattice coarser than ~0.15 bandwidths (a few
    values per bandwidth: bfloat16 units offset by ~10 sd or more at N = 1000), and the same
    rows as the first criterion alone in the float32 stores of the default run. Candidate
    rows are done in slices of ``budget`` values (transient memory ~40 bytes per value).
    """
    B, N = v.shape
    z = v.detach().cpu().numpy()
    # candidates by a float32 sort (numpy's vectorised row sort: ~5x faster than torch's,
    # twice as fast again as float64): equal values stay equal in float32; rows whose values
    # are not all float32 (float64 input from float32 stores usually is) are sorted again in
    # full precision
    z32 = z.astype(np.float32)
    srt = np.sort(z32, axis=1)
    cand = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).sum(1) >= share * N)
    tied = np.zeros(B, dtype=bool)
    step = max(1, budget // N)
    for c in (cand[i : i + step] for i in range(0, len(cand), step)):
        srt_c = srt[c].astype(np.float64)
        inexact = np.flatnonzero((z32[c] != z[c]).any(1))
        if len(inexact):
            srt_c[inexact] = np.sort(z[c[inexact]], axis=1)
        s = torch.from_numpy(srt_c)
        new = torch.ones(s.shape, dtype=torch.bool)
        new[:, 1:] = s[:, 1:] != s[:, :-1]
        repeats = (~new).sum(1)
        run = new.cumsum(1) - 1  # each sample's run of equal values (0, 1, ... per row)
        size = torch.zeros_like(run).scatter_add_(1, run, torch.ones_like(run)).gather(1, run)
        sd_c = torch.sqrt(_var(s)) if sd is None else sd.cpu().double()[torch.from_numpy(c)]
        h = (sd_c * N ** (-1.0 / 5.0))[:, None]
        near = torch.searchsorted(s, s + h, right=True) - torch.searchsorted(s, s - h)  # samples within h
        dominant = (size >= 2) & (size >= dominance * near)
        tied[c] = ((repeats >= share * N) & (dominant.sum(1) >= share * N)).numpy()
    return torch.from_numpy(tied)


def _pack_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Row-wise compaction of a boolean ``(R, N)`` mask: ``(ri, ci, slot, width)`` where the
    selected column ``ci`` of row ``ri`` goes to ``slot`` (0, 1, ... in column order within
    its row) of an ``(R, width)`` array, ``width`` the largest count in a row (at least 1)."""
    cnt = mask.sum(1)
    ri, ci = torch.nonzero(mask, as_tuple=True)  # row-major: each row's selected columns in order
    slot = torch.arange(len(ri)) - (cnt.cumsum(0) - cnt)[ri]
    return ri, ci, slot, max(1, int(cnt.max()))


def _direct_density(coords: tuple[torch.Tensor, ...], h: torch.Tensor | float, which: torch.Tensor,
                    out: torch.Tensor, scale: torch.Tensor | None = None, budget: int = 1 << 22,
                    sources: torch.Tensor | None = None) -> torch.Tensor:
    """``out`` with the entries ``which (B, N)`` replaced by the exact Gaussian KDE at those samples.

    With ``sources (B, N)``, the sum runs over those samples only and is *added* to ``out``
    (the part of the density that a grid over the other samples does not hold).

    ``coords`` are the ``d`` coordinate rows ``(B, N)`` of each batch row's samples, ``h`` the
    isotropic kernel width (per row or scalar). The density is ``1/N sum_j phi_h(z_i - z_j)``,
    the same sum as scipy's ``gaussian_kde`` at ``z_i`` (here in coordinates where the
    kernel is isotropic), times ``scale (B,)`` if given. Cost: (selected samples) x N per row.

    The squared distances are formed from coordinate differences in float32 (no cancellation
    as in ``|q|^2 + |p|^2 - 2 q.p``, relative error ~1e-7 per distance) and the exponent is
    clamped at -80 (a term below e^-80 cannot matter next to the sample's own term, 1), which
    keeps ``exp`` off its slow underflow path for far outliers.
    """
    B, N = which.shape
    cnt = which.sum(1)
    rows = torch.nonzero(cnt).flatten()  # only rows with selected samples
    if len(rows) == 0:
        return out
    # Rows are taken in chunks, each padded to its own largest number of selected samples
    # (m) and of sources (k), not to the largest of all rows (a few rows with many tail
    # samples would otherwise multiply the work of every row). A chunk holds rows whose m lie
    # within a factor of 2, sorted by k, then m, so both paddings stay small (e.g. every
    # sample of a narrow grid against a few sources, next to a few rim samples of a window).
    kc = sources.sum(1) if sources is not None else torch.full_like(cnt, N)
    band = torch.floor(torch.log2(cnt[rows].double())).long()
    key = (band * (N + 1) + kc[rows]) * (N + 1) + cnt[rows]
    order = torch.argsort(key, descending=True, stable=True)
    rows, band = rows[order], band[order]
    cnt, kc = cnt[rows], kc[rows]
    band_end = torch.cumsum(torch.unique_consecutive(band, return_counts=True)[1], 0).tolist()
    R, d = len(rows), len(coords)
    ri, ci, slot, M = _pack_rows(which[rows])
    hh = (torch.as_tensor(h, dtype=torch.float64)[rows] if torch.is_tensor(h) and h.dim() else
          torch.full((R,), float(h), dtype=torch.float64))
    coef = (-0.5 / hh**2).float()[:, None, None]
    # the selected samples packed per row (d x (R, M)); the padding is never read back
    Q = [torch.zeros(R, M, dtype=torch.float32) for _ in coords]
    for q, c in zip(Q, coords):
        q[ri, slot] = c[rows[ri], ci].float()
    if sources is None:
        P = [c[rows].float() for c in coords]  # every sample is a source: d x (R, N)
    else:  # only the sources, packed per row, padded with far points (e^-80)
        si, sj, sslot, K = _pack_rows(sources[rows])
        P = [torch.full((R, K), math.inf) for _ in coords]
        for pk, c in zip(P, coords):
            pk[si, sslot] = c[rows[si], sj].float()
    got = torch.zeros(R, M, dtype=torch.float32)
    r0 = 0
    for end in band_end:  # each band of m
        while r0 < end:
            m_hi, k_w = 2 * int(cnt[r0]), max(1, int(kc[r0]))  # bounds of the chunk's counts (a row
            # without sources adds nothing: its padding sums to 0)
            sl = slice(r0, min(end, r0 + max(1, budget // (m_hi * k_w))))
            m = int(cnt[sl].max())
            # the longer of the two axes innermost (contiguous): a few sources for many
            # samples would otherwise leave the elementwise kernels an inner axis of 1-3
            q_ax, p_ax, red = ((slice(None), None), (None, slice(None)), -1) if k_w >= m else \
                ((None, slice(None)), (slice(None), None), -2)
            d2 = (Q[0][sl, :m][(slice(None), *q_ax)] - P[0][sl, :k_w][(slice(None), *p_ax)]).square_()
            for k in range(1, d):
                d2 += (Q[k][sl, :m][(slice(None), *q_ax)] - P[k][sl, :k_w][(slice(None), *p_ax)]).square_()
            got[sl, :m] = d2.mul_(coef[sl]).clamp_(min=-80.0).exp_().sum(red)
            r0 = sl.stop
    res = got.double() / (N * (2 * math.pi) ** (d / 2) * hh[:, None] ** d)
    if scale is not None:
        res = res * scale.double()[rows, None]
    out = out.clone()
    if sources is not None:
        out[rows[ri], ci] += res[ri, slot].to(out.dtype)
    else:
        out[rows[ri], ci] = res[ri, slot].to(out.dtype)
    return out


FAR = 10.0  # kernel widths: beyond this a term weighs < e^-50 against a sample's own term, 1


def _tail_density(coords: tuple[torch.Tensor, ...], h: torch.Tensor | float, which: torch.Tensor,
                  out: torch.Tensor, off_grid: torch.Tensor, gap2: torch.Tensor,
                  scale: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_direct_density` for the samples ``which`` of gridded rows: a sample farther
    than ``FAR`` kernel widths from the grid's box (``gap2``: squared distance of each sample
    from the box, 0 inside it) sums over the samples off the grid (``off_grid``) only. Every
    sample on the grid is at least that far from it, so each dropped term is below e^-50 of
    the sample's own term: far below the float32 rounding of the sum. A heavy-tailed row's far
    outliers then cost (samples off the grid) each instead of N."""
    hh = h[:, None] if torch.is_tensor(h) and h.dim() else h
    far = which & (gap2 > (FAR * hh) ** 2)
    out = _direct_density(coords, h, which & ~far, out, scale)
    if far.any():
        out = _direct_density(coords, h, far, out.masked_fill(far, 0.0), scale, sources=off_grid)
    return out


def _off_grid_density(coords: tuple[torch.Tensor, ...], h: torch.Tensor | float, pos: list[torch.Tensor],
                      top: torch.Tensor | int, spacing: list[torch.Tensor], out: torch.Tensor,
                      scale: torch.Tensor | None = None) -> torch.Tensor:
    """The densities of rows whose grid is a window that does not hold every sample, in 1-D
    and 2-D alike. ``out`` holds the grid's values; ``pos`` are the samples' grid positions
    (cells, one ``(R, N)`` tensor per axis; the grid spans ``[0, top]``) and ``spacing`` the
    cell size per axis. The samples off the grid get the exact sum (:func:`_tail_density`);
    the terms of those within the kernel's reach (5 h) of the grid are added to the samples
    on it within that reach of its edges (no other sample on it is within reach of them)."""
    per_row = torch.is_tensor(h) and h.dim() > 0
    hh = h[:, None] if per_row else h
    off = torch.zeros(pos[0].shape, dtype=torch.bool)
    reaches = torch.ones(pos[0].shape, dtype=torch.bool)  # within reach of the grid on every axis
    rim = torch.zeros(pos[0].shape, dtype=torch.bool)  # within reach of an edge on some axis
    gap2 = torch.zeros(pos[0].shape, dtype=pos[0].dtype)
    for p, s in zip(pos, spacing):
        r = 5 * hh / s
        off |= (p < 0) | (p > top)
        reaches &= (p > -r) & (p < top + r)
        rim |= (p < r) | (p > top - r)
        gap2 += _gap(p, top, s).square()
    near = off & reaches
    out = _tail_density(coords, h, off, out, off, gap2, scale)
    if near.any():
        rows = torch.nonzero(near.any(1)).flatten()
        out[rows] = _direct_density(tuple(c[rows] for c in coords), h[rows] if per_row else h,
                                    (rim & ~off)[rows], out[rows], None if scale is None else scale[rows],
                                    sources=near[rows])
    return out


def _gap(pos: torch.Tensor, top: torch.Tensor | float, spacing: torch.Tensor | float) -> torch.Tensor:
    """Distance of grid positions ``pos`` (in cells) from the grid's span ``[0, top]``, in
    coordinate units (cells times ``spacing``)."""
    return torch.clamp(torch.maximum(-pos, pos - top), min=0.0) * spacing


def _var(x: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of each row (two passes; faster than ``Tensor.var`` on rows)."""
    xc = x - x.mean(1, keepdim=True)
    return (xc * xc).sum(1) / (x.shape[1] - 1)


def _whiten(x: torch.Tensor, y: torch.Tensor, with_var: bool = False) -> tuple[torch.Tensor, ...]:
    """Whitened coordinates ``(u, v)`` of each pair and the Jacobian ``det L`` of the whitening
    (and the product of the two variances, ``with_var``)."""
    N = x.shape[1]
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    sxx = (xc * xc).sum(1) / (N - 1)
    syy = (yc * yc).sum(1) / (N - 1)
    sxy = (xc * yc).sum(1) / (N - 1)
    # Cholesky of [[sxx, sxy], [sxy, syy]]: L = [[a, 0], [b, c]]
    a = torch.sqrt(sxx)
    b = sxy / a
    c = torch.sqrt(torch.clamp(syy - b * b, min=1e-300))
    u = xc / a[:, None]
    if with_var:
        return u, (yc - b[:, None] * u) / c[:, None], a * c, sxx * syy
    return u, (yc - b[:, None] * u) / c[:, None], a * c


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


def _kde_2d_tied(x: np.ndarray, y: np.ndarray, h: float, cells_per_h: float = 16.0) -> np.ndarray:
    """The 2-D Scott-rule KDE at the samples for a pair whose ``x`` has point masses.

    Whitened with ``x`` first, ``u`` depends on ``x`` only, so the samples of one mass share
    ``u`` and the isotropic kernel factorises: at a sample with ``u = u_g`` the density is a
    1-D KDE in ``v`` of all samples weighted by ``phi_h(u_g - u_j)``. Each mass (a value of
    ``x`` held by two or more samples) gets that weighted 1-D KDE on a fine grid (linear
    binning, spacing ``h / cells_per_h``: error ~1e-4 relative), read at its samples; the
    samples with a value of their own are summed directly. Returns the density (B = 1 row).
    """
    n = len(x)
    u, v, jac = (t[0].numpy() for t in _whiten(torch.from_numpy(x[None]), torch.from_numpy(y[None])))
    jac = float(jac)
    vals, inv, cnt = np.unique(u, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    out = np.empty(n)
    single = cnt[inv] == 1
    if single.any():
        d2 = (u[single, None] - u[None, :]) ** 2 + (v[single, None] - v[None, :]) ** 2
        out[single] = np.exp(-0.5 * d2 / h**2).sum(1)
    lo, hi = v.min() - 5 * h, v.max() + 5 * h
    G = int(min(1 << 16, math.ceil((hi - lo) / (h / cells_per_h)) + 1))
    delta = (hi - lo) / (G - 1)
    bw = math.sqrt(max(h * h - delta * delta / 3, (0.25 * h) ** 2))
    pos = (v - lo) / delta
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, G - 2)
    w1 = pos - i0
    L = min(G - 1, int(math.ceil(10 * bw / delta)))  # lags beyond 10 widths weigh < e^-50
    lags = np.arange(-L, L + 1) * delta
    kern = np.exp(-0.5 * (lags / bw) ** 2) / (math.sqrt(2 * math.pi) * bw) * delta
    for g in np.flatnonzero(cnt > 1):
        wu = np.exp(-0.5 * ((vals[g] - u) / h) ** 2)  # the u-part of the kernel, per sample
        grid = np.bincount(i0, wu * (1 - w1), G) + np.bincount(i0 + 1, wu * w1, G)
        # sum_j wu_j exp(-(v - v_j)^2 / 2h^2) = sqrt(2 pi) h * (1-D KDE of width h, weights wu)
        smooth = np.convolve(grid, kern, mode="full")[L : L + G] / delta * (math.sqrt(2 * math.pi) * h)
        members = inv == g
        out[members] = smooth[i0[members]] * (1 - w1[members]) + smooth[i0[members] + 1] * w1[members]
    return out / (2 * math.pi * h * h) / (n * jac)


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


@torch.inference_mode()
def mi_fast(x: np.ndarray, y: np.ndarray, grid: int = 256, grid_1d: int = 512, batch: int = 256) -> np.ndarray:
    """Batched MI in nats for many pairs: rows of ``x`` against rows of ``y``.

    Parameters
    ----------
    x, y : ndarray, shape (n_pairs, n_samples)
    grid : largest number of grid points per axis of the 2-D binned KDE
    grid_1d : grid points of the 1-D marginal KDEs
    batch : pairs per batched computation (memory: ~15 * batch * n_samples * 8 bytes; the
        2-D grids are smoothed in slices of at most 2^22 cells)

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
    idx = np.flatnonzero((sx > 0) & (sy > 0) & np.isfinite(sx) & np.isfinite(sy))
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
    a: np.ndarray, src: np.ndarray, dst: np.ndarray, grid: int = 256, grid_1d: int = 512, batch: int = 256
) -> np.ndarray:
    """MI of every unit between sublayers ``src[t]`` and ``dst[t]``, for a block of units.

    Same numbers as :func:`mi_fast` on each pair, but each (sublayer, unit) marginal density
    is computed once and shared by the transitions that use it, and pairs of similar extent
    are batched together.

    Parameters
    ----------
    a : ndarray, shape (n_samples, n_sublayers, n_units)
    src, dst : int arrays, shape (n_transitions,)

    Returns
    -------
    ndarray, shape (n_transitions, n_units)
    """
    a = np.asarray(a)
    N, S, U = a.shape
    # (sublayer*unit, N) in float64: one pass for the transpose and the conversion
    rows = torch.from_numpy(np.ascontiguousarray(a.transpose(1, 2, 0), dtype=np.float64).reshape(S * U, N))
    sd = torch.sqrt(_var(rows))
    ok = (sd > 0) & torch.isfinite(sd)
    marg = torch.empty(S * U, N, dtype=torch.float64)  # rows that are not ok are never read
    tied = _heavily_tied(rows, sd=sd)  # once per (sublayer, unit), shared by its transitions
    idx = torch.nonzero(ok).flatten()
    for s in range(0, len(idx), batch):
        sel = idx[s : s + batch]
        marg[sel] = _kde_1d_at_samples(rows[sel], grid_1d, tied=tied[sel], sd=sd[sel])
    src, dst = np.asarray(src), np.asarray(dst)
    ri = torch.from_numpy((src[:, None] * U + np.arange(U)[None]).ravel())
    rj = torch.from_numpy((dst[:, None] * U + np.arange(U)[None]).ravel())
    out = torch.zeros(len(ri), dtype=torch.float64)
    todo = torch.nonzero(ok[ri] & ok[rj]).flatten()
    # pairs of similar extent share a batch (and so mostly one grid size)
    ext = (rows.max(1).values - rows.min(1).values) / torch.where(ok, sd, torch.ones_like(sd))
    todo = todo[torch.argsort(torch.maximum(ext[ri[todo]], ext[rj[todo]]), stable=True)]
    for s in range(0, len(todo), batch):
        sel = todo[s : s + batch]
        pxy = _kde_2d_at_samples(rows[ri[sel]], rows[rj[sel]], grid, tied=(tied[ri[sel]], tied[rj[sel]]))
        out[sel] = (torch.log(pxy + EPS) - torch.log(marg[ri[sel]] * marg[rj[sel]] + EPS)).mean(1)
    return out.numpy().reshape(len(src), U)
