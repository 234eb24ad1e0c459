"""The reference MI estimator (§2.5) written directly with scipy, and the Gaussian's MI.

:func:`mi_reference` is the definition the fast estimator is tested against: scipy's
``gaussian_kde`` (Scott's rule; 2-D with the full covariance) evaluated at the samples, with
1e-10 inside the logs as the paper adds. :func:`gaussian_mi` is the analytic MI of a bivariate
Gaussian, the known answer both are checked against.
"""

from __future__ import annotations

import numpy as np


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


def gaussian_mi(rho: float) -> float:
    """Analytic MI of a bivariate Gaussian with correlation ``rho``: ``-0.5 log(1 - rho^2)``."""
    return float(-0.5 * np.log(1 - rho * rho))
