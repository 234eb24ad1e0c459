"""Per-row variance and whitening by the pair's covariance, shared by the estimator's parts.

In whitened coordinates the full-covariance Scott kernel is isotropic (width
``h = N^(-1/6)``), which is what makes it separable on a grid and summable directly.
"""

from __future__ import annotations

import torch


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
