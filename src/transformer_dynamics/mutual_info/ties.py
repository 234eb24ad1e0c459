"""Point masses: rows whose repeated values the binned KDE would blur, summed exactly.

A variable with few distinct values (layer 0 at the last token: most texts end in one of a
few tokens) has point masses; binning blurs each by an amount that depends on where it falls
between grid points (errors of several 0.01 nats). :func:`_heavily_tied` finds such rows
(not mere bfloat16 rounding); :func:`_kde_2d_tied` sums a pair's 2-D density exactly per mass.
Tolerance against scipy: 1e-4 relative in the density (tests/unit/test_mutual_info.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .whitening import _var, _whiten


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
