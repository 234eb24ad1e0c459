"""The MI of many unit pairs at once (§2.5, Fig 1G-H): the functions the analyses call.

:func:`mi_transitions` is what ``unit_stats`` uses per unit block (marginals computed once
per (sublayer, unit) and shared by the transitions); :func:`mi_fast` is the same estimate for
arbitrary row pairs. Both equal :func:`.reference.mi_reference` within 0.01 nats (tests).
"""

from __future__ import annotations

import numpy as np
import torch

from ..progress import Progress

from .grid import _kde_1d_at_samples, _kde_2d_at_samples
from .reference import EPS
from .ties import _heavily_tied
from .whitening import _var


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


@torch.inference_mode()
def mi_transitions(
    a: np.ndarray, src: np.ndarray, dst: np.ndarray, grid: int = 256, grid_1d: int = 512, batch: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """MI of every unit between sublayers ``src[t]`` and ``dst[t]``, for a block of units.

    Same numbers as :func:`mi_fast` on each pair, but each (sublayer, unit) marginal density
    is computed once and shared by the transitions that use it, and pairs of similar extent
    are batched together.

    Parameters
    ----------
    a : ndarray, shape (n_samples, n_sublayers, n_units)
    src, dst : int arrays, shape (n_transitions,)
    progress : print ``MI pair batch k/n, ETA`` lines on the terminal (:mod:`..progress`)

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
    bar = Progress(-(-len(todo) // batch), "MI pair batch", min_interval=10.0) if progress else None
    for k, s in enumerate(range(0, len(todo), batch)):
        sel = todo[s : s + batch]
        pxy = _kde_2d_at_samples(rows[ri[sel]], rows[rj[sel]], grid, tied=(tied[ri[sel]], tied[rj[sel]]))
        out[sel] = (torch.log(pxy + EPS) - torch.log(marg[ri[sel]] * marg[rj[sel]] + EPS)).mean(1)
        if bar is not None:
            bar.update(k + 1, f"{len(todo)} unit x transition pairs")
    return out.numpy().reshape(len(src), U)
