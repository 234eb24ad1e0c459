"""Exact Gaussian KDE sums for selected samples: the part of a density no grid holds.

Heavy-tailed rows keep a fine grid over a window around their bulk; the samples off the
window get their density by direct summation (:func:`_direct_density`), and the terms of
those within the kernel's reach are added to the gridded samples near the window's edge
(:func:`_off_grid_density`, :func:`_tail_density`), so the cost does not grow with the tails.
Float32 coordinate differences, exponent clamped at -80: equal to the float64 brute-force
sum to 1e-5 relative (tests).
"""

from __future__ import annotations

import math

import torch


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
