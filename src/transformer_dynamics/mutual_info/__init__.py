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

Parts
-----
- :mod:`.reference`: the definition with scipy (:func:`mi_reference`), :func:`gaussian_mi`;
- :mod:`.estimator`: :func:`mi_transitions` / :func:`mi_fast`, the batched estimate;
- :mod:`.grid`: the binned 1-D and 2-D KDEs read back at the samples;
- :mod:`.direct_sum`: exact sums for the samples a grid does not hold (heavy tails);
- :mod:`.ties`: point masses (few distinct values), summed exactly;
- :mod:`.whitening`: variance and whitening shared by the parts.

Stated tolerance: the batched estimate equals :func:`mi_reference` within 0.01 nats per pair
on Gaussian, non-Gaussian, heavy-tailed, outlier and tied data (tests/unit/test_mutual_info.py,
fresh random inputs each run; benchmarks/mi.py measures the speed against scipy).
"""

from .estimator import mi_fast, mi_transitions
from .reference import EPS, gaussian_mi, mi_reference

__all__ = ["EPS", "gaussian_mi", "mi_fast", "mi_reference", "mi_transitions"]
