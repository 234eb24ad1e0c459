"""PCA of residual-stream trajectories (§2.8, Fig 4A-C).

RS ``(N, 2L, D)`` is reshaped to ``X (2NL, D)``, centred by the global mean ``mu`` and
decomposed, ``X_c = U S V^T``. We accumulate ``X^T X`` and the column sums in float64 over
sample chunks of the store (one pass, memory ``D^2``, whatever N is) and take the
eigendecomposition of the centred scatter matrix: its eigenvectors are V and its
eigenvalues ``s_k^2``. This is exact (not randomised) and streams, so the same code serves
SmolLM2 and an 8B model at N = 10,000.

Fig 4C ("explained variance per layer using 100 PC components") is computed per sublayer:
the PCA of that sublayer's N vectors (centred by the sublayer's own mean), cumulative
explained variance over its first ``min(100, D, N-1)`` components, and the number of
components needed for 90 %.

``device=None`` (config ``pca.device: cpu``) computes with numpy and LAPACK (``syevr`` on an
index subset); ``device="cuda"`` (or any torch device) accumulates the same float64 scatter
or Gram matrices with torch on that device and takes a full ``torch.linalg.eigh``. The two
agree to float64 rounding (tested on the CPU with ``device="cpu"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd


@dataclass
class PCAResult:
    """Global PCA of RS vectors.

    Attributes
    ----------
    mean : (D,) global mean ``mu``
    components : (k, D) right singular vectors ``V^T`` (rows), sign-fixed so each row's
        largest-magnitude entry is positive
    singular_values : (k,) ``s`` of the centred matrix
    explained_variance_ratio : (k,) ``s^2 / sum(s_i^2)`` (the sum over all D components)
    n_vectors : number of vectors (2NL)
    """

    mean: np.ndarray
    components: np.ndarray
    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    n_vectors: int

    def transform(self, X: np.ndarray, k: int = 2) -> np.ndarray:
        """Scores ``(X - mu) V[:, :k]`` for ``X (..., D)``."""
        return (np.asarray(X, dtype=np.float64) - self.mean) @ self.components[:k].T

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        """Back to model space: ``x = z V[:, :k]^T + mu`` for ``Z (..., k)``."""
        k = Z.shape[-1]
        return np.asarray(Z, dtype=np.float64) @ self.components[:k] + self.mean

    def save(self, path: str) -> None:
        np.savez(path, mean=self.mean, components=self.components, singular_values=self.singular_values,
                 explained_variance_ratio=self.explained_variance_ratio, n_vectors=self.n_vectors)

    @classmethod
    def load(cls, path: str) -> "PCAResult":
        d = np.load(path)
        return cls(d["mean"], d["components"], d["singular_values"], d["explained_variance_ratio"], int(d["n_vectors"]))


def _sign_fix(V: np.ndarray) -> np.ndarray:
    """Make each row's largest-|.| entry positive (deterministic signs, like sklearn's svd_flip)."""
    idx = np.argmax(np.abs(V), axis=1)
    signs = np.sign(V[np.arange(V.shape[0]), idx])
    signs[signs == 0] = 1
    return V * signs[:, None]


class _Backend:
    """Where the float64 accumulations and eigendecompositions run: numpy and LAPACK
    (``device=None``) or torch on ``device``. The algorithms above it are written once."""

    def __init__(self, device: str | None) -> None:
        self.device = device
        if device is not None:
            import torch

            self.torch = torch

    def array(self, a: np.ndarray) -> Any:
        a = np.asarray(a, dtype=np.float64)
        return a if self.device is None else self.torch.from_numpy(a).to(self.device)

    def zeros(self, *shape: int) -> Any:
        return np.zeros(shape) if self.device is None else self.torch.zeros(
            shape, dtype=self.torch.float64, device=self.device)

    def contiguous(self, a: Any) -> Any:
        return np.ascontiguousarray(a) if self.device is None else a.contiguous()

    def outer(self, a: Any, b: Any) -> Any:
        return np.outer(a, b) if self.device is None else self.torch.outer(a, b)

    def numpy(self, a: Any) -> np.ndarray:
        return a if self.device is None else a.cpu().numpy()

    def top(self, C: Any, k: int, vectors: bool) -> tuple[np.ndarray, np.ndarray | None, float]:
        """Top ``k`` eigenvalues of the symmetrised ``C`` (descending, >= 0), their
        eigenvectors as rows (``vectors``, signs fixed) and its trace. numpy: LAPACK
        ``syevr`` on an index subset (for D = 4096 several times faster than a full ``eigh``,
        docs/scale.md); torch: a full ``eigh``."""
        C = (C + C.T) / 2
        D = C.shape[0]
        if self.device is None:
            import scipy.linalg

            trace = float(np.trace(C))
            if vectors:
                w, V = scipy.linalg.eigh(C, subset_by_index=[D - k, D - 1], driver="evr")
                return np.clip(w[::-1], 0, None), _sign_fix(V[:, ::-1].T), trace
            w = scipy.linalg.eigh(C, eigvals_only=True, subset_by_index=[D - k, D - 1], driver="evr")
            return np.clip(w[::-1], 0, None), None, trace
        trace = float(self.torch.trace(C))
        if vectors:
            w, V = self.torch.linalg.eigh(C)
            return w.flip(0)[:k].clamp(min=0).cpu().numpy(), _sign_fix(V.flip(1)[:, :k].T.cpu().numpy()), trace
        return self.torch.linalg.eigvalsh(C).flip(0)[:k].clamp(min=0).cpu().numpy(), None, trace


def fit_pca(chunks: Iterable[np.ndarray], n_components: int | None = None, device: str | None = None) -> PCAResult:
    """Global PCA over every vector of every sublayer, streaming over ``(n, 2L, D)`` chunks
    (``device``: see the module docstring)."""
    xp = _Backend(device)
    xtx = None
    total = None
    n = 0
    for rs in chunks:
        X = xp.array(rs).reshape(-1, rs.shape[-1])
        if xtx is None:
            xtx = xp.zeros(X.shape[1], X.shape[1])
            total = xp.zeros(X.shape[1])
        xtx += X.T @ X
        total += X.sum(0)
        n += X.shape[0]
    if xtx is None or n < 2:
        raise ValueError("PCA needs at least two vectors")
    mean = total / n
    D = xtx.shape[0]
    w, V, total_var = xp.top(xtx - n * xp.outer(mean, mean), D if n_components is None else min(n_components, D), True)
    evr = w / total_var if total_var > 0 else np.zeros_like(w)
    return PCAResult(xp.numpy(mean), V, np.sqrt(w), evr, n)


def sublayer_group_size(n_samples: int, d_model: int, memory_mb: int) -> int:
    """Sublayers per pass of :func:`per_sublayer_spectra` within ``memory_mb``.

    Each sublayer holds a ``D x D`` float64 scatter matrix, or its ``n x D`` vectors when
    ``n < D`` (the Gram route), whichever is smaller.
    """
    per_sublayer = 8 * d_model * min(n_samples, d_model)
    return max(1, int(memory_mb * 1e6 // per_sublayer))


def update_rows(sample_chunk: int, target: int = 256) -> int:
    """Samples per streamed update of the scatter matrices: a multiple of the store's sample
    chunk near ``target``. A rank-64 update of a 4096 x 4096 float64 matrix moves 268 MB of
    memory for 2 GFLOP (memory-bound); rank-256 does 4x the work per byte (docs/scale.md)."""
    return sample_chunk * max(1, round(target / sample_chunk))


def per_sublayer_spectra(
    chunk_iter: Iterator[np.ndarray] | Iterable[np.ndarray],
    labels: list[str],
    max_components: int = 100,
    n_samples: int | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """Cumulative explained variance of each sublayer's own PCA (Fig 4C).

    Parameters
    ----------
    chunk_iter : ``(n, S, D)`` chunks (all S sublayers, or a subset matching ``labels``); in
        the scatter route each chunk is a rank-n update of S ``D x D`` matrices, so chunks of a
        few hundred samples keep it compute-bound (see :func:`update_rows`)
    n_samples : total rows over the chunks, if known. When it is smaller than ``D`` (the
        paper's N = 1000 at width 4096) the spectrum comes from the ``n x n`` Gram matrix of
        the centred vectors, whose nonzero eigenvalues are those of the ``D x D`` covariance:
        an ``n``-sized instead of a ``D``-sized eigenproblem per sublayer.
    device : None (numpy/LAPACK) or a torch device (module docstring)

    Returns
    -------
    DataFrame ``sublayer_index``, ``sublayer``, ``component`` (1-based), ``explained_variance_ratio``,
    ``cumulative``.
    """
    xp = _Backend(device)
    gram = None  # (S, n, D) vectors in the Gram route
    xtx = None
    tot = None
    n = 0
    for rs in chunk_iter:
        X = xp.array(rs)
        S, D = X.shape[1], X.shape[2]
        if n_samples is not None and n_samples < D:
            if gram is None:
                gram = xp.zeros(S, n_samples, D)
            gram[:, n : n + X.shape[0]] = X.swapaxes(0, 1)
        else:
            if xtx is None:
                xtx = xp.zeros(S, D, D)
                tot = xp.zeros(S, D)
            Xt = xp.contiguous(X.swapaxes(0, 1))  # (S, n, D)
            for s in range(S):  # one BLAS GEMM per sublayer (a batched einsum runs without BLAS)
                xtx[s] += Xt[s].T @ Xt[s]
            tot += X.sum(0)
        n += X.shape[0]
    if gram is not None and n != n_samples:
        raise ValueError(f"expected {n_samples} rows, got {n}")
    rows = []
    n_sub = gram.shape[0] if gram is not None else xtx.shape[0]
    D = gram.shape[2] if gram is not None else xtx.shape[1]
    for s in range(n_sub):
        k = min(max_components, D, max(1, n - 1))
        if gram is not None:
            Xc = gram[s] - gram[s].mean(0)
            C = Xc @ Xc.T  # n x n: its nonzero eigenvalues are the covariance's
        else:
            mean = tot[s] / n
            C = xtx[s] - n * xp.outer(mean, mean)
        w, _, total_var = xp.top(C, k, False)
        rows.append(_spectrum_rows(s, labels[s], w, total_var, k))
    return pd.concat(rows, ignore_index=True)


def _spectrum_rows(s: int, label: str, w: np.ndarray, total_var: float, k: int) -> pd.DataFrame:
    evr = w / total_var if total_var > 0 else np.zeros_like(w)
    return pd.DataFrame({
        "sublayer_index": s, "sublayer": label, "component": np.arange(1, k + 1),
        "explained_variance_ratio": evr[:k], "cumulative": np.cumsum(evr)[:k],
    })


def n_components_for(spectra: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """Per sublayer, the number of components whose cumulative explained variance reaches ``threshold``.

    NaN when the first ``max_components`` do not reach it.
    """
    def first(g: pd.DataFrame) -> float:
        hit = g.loc[g["cumulative"] >= threshold, "component"]
        return float(hit.iloc[0]) if len(hit) else float("nan")

    out = spectra.groupby(["sublayer_index", "sublayer"], sort=True).apply(first, include_groups=False)
    return out.rename(f"n_pcs_{int(threshold * 100)}").reset_index()


def trajectories(chunks: Iterable[tuple[int, np.ndarray]], pca: PCAResult, k: int = 2) -> pd.DataFrame:
    """PC scores of every sample's trajectory: ``sample``, ``sublayer_index``, ``pc1``..``pck``."""
    parts = []
    for s0, rs in chunks:
        Z = pca.transform(rs, k)  # (n, S, k)
        n, S, _ = Z.shape
        df = pd.DataFrame({"sample": np.repeat(np.arange(s0, s0 + n), S), "sublayer_index": np.tile(np.arange(S), n)})
        for j in range(k):
            df[f"pc{j + 1}"] = Z[:, :, j].ravel()
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def spectrum_table(res: PCAResult) -> pd.DataFrame:
    """The global PCA's spectrum (Fig 4B): ``component`` (1-based), ``explained_variance_ratio``,
    ``cumulative``, ``singular_value``."""
    return pd.DataFrame({
        "component": np.arange(1, len(res.explained_variance_ratio) + 1),
        "explained_variance_ratio": res.explained_variance_ratio,
        "cumulative": np.cumsum(res.explained_variance_ratio),
        "singular_value": res.singular_values,
    })


def sublayer_spectra_in_groups(store: Any, n_components: int, memory_mb: int, device: str | None = None) -> pd.DataFrame:
    """:func:`per_sublayer_spectra` of every sublayer of ``store``, in groups of sublayers whose
    scatter matrices (or Gram vectors) fit ``memory_mb`` (:func:`sublayer_group_size`), one
    pass over the store per group (Fig 4C).

    ``store`` is an :class:`~transformer_dynamics.store.ActivationStore` (anything with
    ``labels``, ``n_samples``, ``d_model``, ``sample_chunk`` and ``chunks(sublayers, rows)``).
    """
    N, S, D = store.n_samples, len(store.labels), store.d_model
    per_group = sublayer_group_size(N, D, memory_mb)
    rows = update_rows(store.sample_chunk)
    parts = []
    for s0 in range(0, S, per_group):
        sl = slice(s0, min(S, s0 + per_group))
        spec = per_sublayer_spectra(store.chunks(sl, rows), store.labels[sl], n_components, N, device)
        spec["sublayer_index"] += s0
        parts.append(spec)
    return pd.concat(parts, ignore_index=True)


def pca_tables(
    store: Any, n_components: int, memory_mb: int, device: str | None = None
) -> tuple[PCAResult, dict[str, pd.DataFrame]]:
    """Everything §2.8 / Fig 4A-C needs from one store, streamed over sample chunks.

    ``store`` is an :class:`~transformer_dynamics.store.ActivationStore` (anything with
    ``labels``, ``n_samples``, ``d_model``, ``sample_chunk``, ``chunks(sublayers=None, rows=None)``
    and ``iter_samples()``). Scatter matrices are updated ~256 samples at a time (:func:`update_rows`).
    ``device``: None (numpy/LAPACK) or a torch device such as ``cuda`` (module docstring).

    Returns
    -------
    The global PCA (:func:`fit_pca`) and the tables ``trajectories`` (PC1-PC2 scores of every
    sample, :func:`trajectories`), ``spectrum`` (:func:`spectrum_table`), ``sublayer_spectra``
    (:func:`sublayer_spectra_in_groups`) and ``n_pcs`` (components for 90 % and 50 % per
    sublayer, :func:`n_components_for`).
    """
    res = fit_pca(store.chunks(rows=update_rows(store.sample_chunk)), n_components, device)
    spectra = sublayer_spectra_in_groups(store, n_components, memory_mb, device)
    return res, {
        "trajectories": trajectories(store.iter_samples(), res, 2),
        "spectrum": spectrum_table(res),
        "sublayer_spectra": spectra,
        "n_pcs": n_components_for(spectra, 0.9).merge(n_components_for(spectra, 0.5)),
    }
