"""Per-unit and whole-vector statistics over sublayers (§2.2-2.4, Fig 1B-F).

Notation: ``a`` is a block of the residual stream, shape ``(n_samples, n_sublayers, n_units)``
(``rs[:, :, u0:u1]``); sublayers are ``L00.attn, L00.mlp, L01.attn, ...``. A *transition* is
a pair of sublayers; the consecutive ones are *within*-layer (``Lxx.attn -> Lxx.mlp``) or
*cross*-layer (``Lxx.mlp -> Lxx+1.attn``), 2L-1 in all.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .sublayers import kinds_of, layers_of

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def transition_table(labels: Sequence[str], pairs: str = "consecutive") -> pd.DataFrame:
    """The transitions between sublayers.

    Parameters
    ----------
    labels : sublayer labels, length 2L
    pairs : ``consecutive`` (2L-1 transitions l -> l+1) or ``all`` (every pair l < m, §2.3)

    Returns
    -------
    DataFrame with ``transition``, ``src``, ``dst`` (sublayer indices), ``from_sublayer``,
    ``to_sublayer``, ``type`` (``within``, ``cross``, or ``skip`` for non-consecutive pairs)
    and ``depth`` (``src / (2L - 1)``, 0..1, for comparing models of different depth).
    """
    S = len(labels)
    if pairs == "consecutive":
        src = np.arange(S - 1)
        dst = src + 1
    elif pairs == "all":
        src, dst = np.triu_indices(S, k=1)
    else:
        raise ValueError(f"pairs must be 'consecutive' or 'all', not {pairs!r}")
    kinds = kinds_of(labels)
    types = [
        ("within" if kinds[i] == "attn" else "cross") if j == i + 1 else "skip" for i, j in zip(src, dst)
    ]
    return pd.DataFrame(
        {
            "transition": np.arange(len(src)),
            "src": src,
            "dst": dst,
            "from_sublayer": [labels[i] for i in src],
            "to_sublayer": [labels[j] for j in dst],
            "type": types,
            "depth": src / max(1, S - 1),
        }
    )


def pearson(a: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Pearson r over samples of every unit between sublayers ``src[t]`` and ``dst[t]`` (§2.3).

    Parameters
    ----------
    a : ndarray, shape (n_samples, n_sublayers, n_units)
    src, dst : int arrays, shape (n_transitions,)

    Returns
    -------
    ndarray, shape (n_transitions, n_units); NaN where a unit is constant over samples
    (the correlation is undefined there).
    """
    a = np.asarray(a, dtype=np.float64)
    z = a - a.mean(axis=0, keepdims=True)
    norm = np.sqrt((z * z).sum(axis=0))  # (S, U)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = z / norm
        r = np.einsum("nsu,nsu->su", z[:, src], z[:, dst])
    r[~np.isfinite(r)] = np.nan
    return np.clip(r, -1.0, 1.0)


def unit_means(a: np.ndarray, labels: Sequence[str], u0: int = 0) -> pd.DataFrame:
    """Mean and sd over samples per unit and sublayer (§2.2, Fig 1B), long format."""
    a = np.asarray(a, dtype=np.float64)
    N, S, U = a.shape
    return pd.DataFrame(
        {
            "unit": np.tile(np.arange(u0, u0 + U), S),
            "sublayer": np.repeat(np.asarray(labels), U),
            "sublayer_index": np.repeat(np.arange(S), U),
            "mean": a.mean(axis=0).ravel(),
            "sd": a.std(axis=0, ddof=1).ravel() if N > 1 else np.zeros(S * U),
        }
    )


def correlation_distribution(
    r: np.ndarray, u0: int = 0, bins: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-unit density of its correlations over transitions (§2.3, Fig 1D).

    Parameters
    ----------
    r : ndarray, shape (n_transitions, n_units)
    bins : bin edges (default 40 bins over [-1, 1])

    Returns
    -------
    DataFrame ``unit``, ``bin_lo``, ``bin_hi``, ``density`` (integrates to 1 per unit).
    """
    bins = np.linspace(-1, 1, 41) if bins is None else bins
    rows = []
    for k in range(r.shape[1]):
        v = r[:, k]
        v = v[np.isfinite(v)]
        dens = np.histogram(v, bins=bins, density=True)[0] if len(v) else np.zeros(len(bins) - 1)
        rows.append(dens)
    dens = np.asarray(rows)
    U = r.shape[1]
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(u0, u0 + U), len(bins) - 1),
            "bin_lo": np.tile(bins[:-1], U),
            "bin_hi": np.tile(bins[1:], U),
            "density": dens.ravel(),
        }
    )


def block_unit_table(
    a: np.ndarray,
    labels: Sequence[str],
    u0: int = 0,
    mi_grid: int = 128,
    r: np.ndarray | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per unit x consecutive transition: Pearson r and MI in nats (Fig 1C, 1G).

    ``r`` (shape ``(2L-1, n_units)``), when given, is the block's Pearson r over the
    consecutive transitions, already computed (:func:`unit_block_tables`). ``progress``:
    the MI's progress lines on the terminal.

    Columns: ``unit``, ``transition``, ``from_sublayer``, ``to_sublayer``, ``type``, ``depth``,
    ``pearson_r``, ``mi_nats``, ``mean_from``, ``mean_to``.
    """
    from .mutual_info import mi_transitions

    tr = transition_table(labels, "consecutive")
    src, dst = tr["src"].to_numpy(), tr["dst"].to_numpy()
    r = pearson(a, src, dst) if r is None else r
    mi = mi_transitions(a, src, dst, grid=mi_grid, progress=progress)
    means = np.asarray(a, dtype=np.float64).mean(axis=0)
    T, U = r.shape
    out = tr.loc[np.repeat(np.arange(T), U), ["transition", "from_sublayer", "to_sublayer", "type", "depth"]]
    out = out.reset_index(drop=True)
    out.insert(0, "unit", np.tile(np.arange(u0, u0 + U), T))
    out["pearson_r"] = r.ravel()
    out["mi_nats"] = mi.ravel()
    out["mean_from"] = means[src].ravel()
    out["mean_to"] = means[dst].ravel()
    return out


def unit_block_tables(
    a: np.ndarray,
    labels: Sequence[str],
    u0: int = 0,
    mi_grid: int = 128,
    correlation_pairs: str = "consecutive",
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Every per-unit statistic of one unit block (§2.2-2.5, Fig 1B-D, 1G-H).

    Pearson r is computed once: over the ``correlation_pairs`` transitions for the
    distribution (Fig 1D), the consecutive ones taken from it for the unit table.

    Parameters
    ----------
    a : ndarray, shape (n_samples, 2L, n_units): ``rs[:, :, u0:u1]``
    labels : sublayer labels, length 2L

    Returns
    -------
    ``{"units": block_unit_table, "means": unit_means, "rdist": correlation_distribution}``
    """
    tr = transition_table(labels, correlation_pairs)
    r = pearson(a, tr["src"].to_numpy(), tr["dst"].to_numpy())
    consecutive = r if correlation_pairs == "consecutive" else r[(tr["type"] != "skip").to_numpy()]
    return {
        "units": block_unit_table(a, labels, u0, mi_grid=mi_grid, r=consecutive, progress=progress),
        "means": unit_means(a, labels, u0),
        "rdist": correlation_distribution(r, u0),
    }


def vector_transition_values(rs: np.ndarray, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and velocity ``||h_dst - h_src||`` per sample and transition (§2.3-2.4).

    Parameters
    ----------
    rs : ndarray, shape (n_samples, n_sublayers, D): whole residual vectors.

    Returns
    -------
    cos, vel : ndarrays, shape (n_samples, n_transitions). Cosine is NaN for a zero vector.
    """
    rs = np.asarray(rs, dtype=np.float64)
    norms = np.linalg.norm(rs, axis=2)
    consecutive = np.array_equal(dst, src + 1) and (len(src) == 0 or np.array_equal(src, np.arange(src[0], src[-1] + 1)))
    if consecutive:  # views, no copies of the (n, T, D) slabs
        h0, h1 = rs[:, src[0] : src[-1] + 1], rs[:, dst[0] : dst[-1] + 1]
        vel = np.linalg.norm(np.diff(rs[:, src[0] : dst[-1] + 1], axis=1), axis=2)
    else:
        h0, h1 = rs[:, src], rs[:, dst]
        vel = np.linalg.norm(h1 - h0, axis=2)
    dot = np.einsum("ntd,ntd->nt", h0, h1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (norms[:, src] * norms[:, dst])
    return cos, vel


def summarize(values: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Mean, sd and quantiles over samples (axis 0), NaN-aware."""
    out = {f"{prefix}_mean": np.nanmean(values, axis=0), f"{prefix}_sd": np.nanstd(values, axis=0, ddof=1)}
    for q in QUANTILES:
        out[f"{prefix}_q{int(q * 100):02d}"] = np.nanquantile(values, q, axis=0)
    return out


def vector_stats(chunks: Iterable[np.ndarray], labels: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole-vector statistics, streaming over sample chunks of the store.

    Returns
    -------
    transitions : one row per consecutive transition: cosine similarity (Fig 1E) and
        velocity (Fig 1F), each with mean, sd and quantiles over samples.
    sublayers : one row per sublayer: the residual vector's L2 norm (activation magnitude),
        mean, sd and quantiles over samples.
    """
    tr = transition_table(labels, "consecutive")
    src, dst = tr["src"].to_numpy(), tr["dst"].to_numpy()
    cos_all, vel_all, norm_all = [], [], []
    for rs in chunks:
        cos, vel = vector_transition_values(rs, src, dst)
        cos_all.append(cos)
        vel_all.append(vel)
        norm_all.append(np.linalg.norm(np.asarray(rs, dtype=np.float64), axis=2))
    cos, vel, norm = (np.concatenate(x) for x in (cos_all, vel_all, norm_all))
    transitions = tr.assign(**summarize(cos, "cosine"), **summarize(vel, "velocity"), n_samples=cos.shape[0])
    sub = pd.DataFrame(
        {
            "sublayer_index": np.arange(len(labels)),
            "sublayer": list(labels),
            "layer": layers_of(labels),
            "kind": kinds_of(labels),
            "depth": np.arange(len(labels)) / max(1, len(labels) - 1),
        }
    ).assign(**summarize(norm, "norm"))
    return transitions, sub
