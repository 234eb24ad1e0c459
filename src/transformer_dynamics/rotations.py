"""Unit phase portraits and rotation counts with permutation nulls (§2.6, Fig 2).

For a unit with activations ``a_l`` over the 2L sublayers (default: the mean over samples):

- ``g = np.gradient(a)`` (central differences over sublayers),
- ``x = a - a_0``, ``y = g - g_0`` (the phase portrait),
- tangent angles ``theta_l = atan2(y_{l+1} - y_l, x_{l+1} - x_l)``,
- ``dtheta_l = theta_{l+1} - theta_l`` wrapped into (-pi, pi],
- ``R = sum(dtheta) / (2 pi)``: signed number of turns. Positive = counter-clockwise.
  Portraits (x, dx/dl) turn clockwise, so R is mostly negative; the paper's 10.74 is a magnitude.

Zero-length tangent steps (two equal consecutive points) have no direction: they contribute
no turning. Their angle is carried over from the previous step (or taken from the first
non-zero step when they lead), so ``dtheta = 0`` across them and no NaN arises. A path with
no non-zero step has R = 0.

Nulls (``null`` argument), each with ``n_shuffles`` seeded permutations per unit:

``points`` (docs/methods.md (b), default)
    permute the phase-space points (x_l, y_l) jointly, then recompute tangents and R.
    Mean R ~ 0, matching the paper's "~0 for the shuffle controls".
``activations`` (docs/methods.md (a))
    permute a, then recompute the gradient and R. White-noise-like sequences rotate *more*
    than smooth ones (R ~ -15 for 64 sublayers), so this null is far from 0.
``increments``
    shuffle the increments ``a_{l+1} - a_l`` and re-integrate: keeps the signal's roughness
    and end-to-end displacement, breaks its temporal order. A random walk already scores
    R ~ -11 under this metric; this null says whether a unit rotates more than that.

Permutations of unit ``u`` come from the named stream ``seeds.stream("rotations.null", seed, u)``: results do not depend
on how units are split into blocks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .seeds import stream

TWO_PI = 2 * np.pi
NULLS = ("points", "activations", "increments")
EXTRA_PREFIX = {"increments": "incr", "points": "pts", "activations": "act"}


def wrap_angle(d: np.ndarray) -> np.ndarray:
    """Wrap angles into (-pi, pi]."""
    return d - TWO_PI * np.ceil((d - np.pi) / TWO_PI)


def path_rotations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Turns of the tangent of the polyline (x_l, y_l) along the last axis.

    Parameters
    ----------
    x, y : ndarray, shape (..., n_points)

    Returns
    -------
    ndarray, shape (...): ``sum(wrapped dtheta) / (2 pi)``.
    """
    dx = np.diff(x, axis=-1)
    dy = np.diff(y, axis=-1)
    theta = np.arctan2(dy, dx)
    valid = (dx != 0) | (dy != 0)
    n = theta.shape[-1]
    pos = np.broadcast_to(np.arange(n), theta.shape)
    idx = np.where(valid, pos, 0)
    idx = np.maximum.accumulate(idx, axis=-1)  # last valid step at or before l
    first = np.argmax(valid, axis=-1)[..., None]  # first valid step (0 if none)
    idx = np.where(pos < first, first, idx)
    theta = np.take_along_axis(theta, idx, axis=-1)
    dtheta = wrap_angle(np.diff(theta, axis=-1))
    r = dtheta.sum(axis=-1) / TWO_PI
    return np.where(valid.any(axis=-1), r, 0.0)


def phase_portrait(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y) = (a - a_0, g - g_0)`` with ``g = np.gradient(a)`` along the last axis."""
    g = np.gradient(a, axis=-1)
    return a - a[..., :1], g - g[..., :1]


def rotation_count(a: np.ndarray) -> np.ndarray:
    """R of each trajectory ``a (..., n_sublayers)`` in activation-gradient space."""
    x, y = phase_portrait(np.asarray(a, dtype=np.float64))
    return path_rotations(x, y)


def unit_permutations(unit: int, n_shuffles: int, n_points: int, seed: int) -> np.ndarray:
    """``(n_shuffles, n_points)`` permutations for one unit, from stream ``rotations.null`` keyed by the unit."""
    rng = stream("rotations.null", seed, unit)
    return rng.permuted(np.tile(np.arange(n_points), (n_shuffles, 1)), axis=1)


def block_permutations(u0: int, n_units: int, n_shuffles: int, n_points: int, seed: int) -> np.ndarray:
    """``(n_units, n_shuffles, n_points)``: :func:`unit_permutations` of units ``u0 .. u0+n_units-1``."""
    return np.stack([unit_permutations(u, n_shuffles, n_points, seed) for u in range(u0, u0 + n_units)])


def null_rotations(a: np.ndarray, perms: np.ndarray, null: str = "points") -> np.ndarray:
    """R under the null for trajectories ``a (U, S)`` and permutations ``perms (U, K, S)``.

    For ``increments`` only the first S-1 entries of each permutation row that are < S-1 are
    used (a permutation of the S-1 increments, derived from the same draw).

    Returns
    -------
    ndarray, shape (U, K)
    """
    a = np.asarray(a, dtype=np.float64)
    U, S = a.shape
    if null == "points":
        x, y = phase_portrait(a)
        xs = np.take_along_axis(np.broadcast_to(x[:, None], perms.shape), perms, axis=-1)
        ys = np.take_along_axis(np.broadcast_to(y[:, None], perms.shape), perms, axis=-1)
        return path_rotations(xs, ys)
    if null == "activations":
        sa = np.take_along_axis(np.broadcast_to(a[:, None], perms.shape), perms, axis=-1)
        return rotation_count(sa)
    if null == "increments":
        d = np.diff(a, axis=-1)  # (U, S-1)
        p = perms[perms < S - 1].reshape(perms.shape[0], perms.shape[1], S - 1)
        sd = np.take_along_axis(np.broadcast_to(d[:, None], p.shape), p, axis=-1)
        walk = np.concatenate([np.broadcast_to(a[:, None, :1], (U, p.shape[1], 1)), a[:, None, :1] + np.cumsum(sd, axis=-1)], axis=-1)
        return rotation_count(walk)
    raise ValueError(f"null must be one of {NULLS}, not {null!r}")


def empirical_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Two-sided empirical p-value with the +1 correction, centred on the null mean.

    ``p = (1 + #{k : |R_k - mean| >= |R_obs - mean|}) / (K + 1)``.
    """
    mu = null.mean(axis=-1, keepdims=True)
    extreme = np.abs(null - mu) >= np.abs(observed[..., None] - mu)
    return (1 + extreme.sum(axis=-1)) / (null.shape[-1] + 1)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values)."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def unit_rotation_table(
    a: np.ndarray,
    u0: int = 0,
    n_shuffles: int = 1000,
    null: str = "points",
    trajectory: str = "mean",
    seed: int = 0,
    extra_nulls: tuple[str, ...] = (),
    perms: np.ndarray | None = None,
) -> pd.DataFrame:
    """Observed R and its null for a block of units.

    Parameters
    ----------
    a : ndarray, shape (n_samples, n_sublayers, n_units)
    u0 : global index of the block's first unit
    trajectory : ``mean`` (R of the mean trajectory over samples) or ``per_sample`` (R of each
        sample's trajectory, averaged; the null applies each permutation to every sample)
    perms : the block's permutations ``(n_units, n_shuffles, n_sublayers)`` if already drawn
        (:func:`block_permutations`; drawn here otherwise)

    Returns
    -------
    DataFrame: ``unit``, ``R``, ``abs_R``, ``null_mean``, ``null_sd``, ``null_abs_mean``,
    ``p_value``, ``z``, ``null`` (name), ``n_shuffles``; for each of ``extra_nulls`` (same
    permutations) ``<p>_null_mean``, ``<p>_null_abs_mean`` and ``<p>_p_value`` with
    ``<p>`` = ``incr`` (increments), ``pts`` (points) or ``act`` (activations). Their p-values
    test |R| against the null's |R| (one-sided: does the unit rotate more?).
    """
    a = np.asarray(a, dtype=np.float64)
    N, S, U = a.shape
    units = np.arange(u0, u0 + U)
    perms = block_permutations(u0, U, n_shuffles, S, seed) if perms is None else perms  # (U, K, S)
    extra: dict[str, np.ndarray] = {}
    if trajectory == "mean":
        traj = a.mean(axis=0).T  # (U, S)
        obs = rotation_count(traj)
        nul = null_rotations(traj, perms, null)
        extra = {n: null_rotations(traj, perms, n) for n in extra_nulls}
    elif trajectory == "per_sample":
        obs = rotation_count(a.transpose(2, 0, 1)).mean(axis=1)  # (U,)
        nul = np.zeros((U, n_shuffles))
        for i in range(N):  # bounded memory: one sample at a time
            nul += null_rotations(a[i].T, perms, null)
        nul /= N
        for n in extra_nulls:
            extra[n] = sum(null_rotations(a[i].T, perms, n) for i in range(N)) / N
    else:
        raise ValueError(f"trajectory must be 'mean' or 'per_sample', not {trajectory!r}")
    sd = nul.std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, (obs - nul.mean(axis=1)) / sd, 0.0)
    cols: dict[str, np.ndarray] = {}
    for n, e in extra.items():
        pfx = EXTRA_PREFIX[n]
        cols[f"{pfx}_null_mean"] = e.mean(axis=1)
        cols[f"{pfx}_null_abs_mean"] = np.abs(e).mean(axis=1)
        cols[f"{pfx}_p_value"] = (1 + (np.abs(e) >= np.abs(obs)[:, None]).sum(axis=1)) / (n_shuffles + 1)
    return pd.DataFrame(
        {
            "unit": units,
            "R": obs,
            "abs_R": np.abs(obs),
            "null_mean": nul.mean(axis=1),
            "null_sd": sd,
            "null_abs_mean": np.abs(nul).mean(axis=1),
            "p_value": empirical_p(obs, nul),
            "z": z,
            "null": null,
            "n_shuffles": n_shuffles,
            **cols,
        }
    )


def rotation_summary(table: pd.DataFrame, alpha: float = 0.05) -> dict[str, float]:
    """Mean |R| observed vs null, mean R, and the fraction of units significant after BH.

    Uses the table's ``q_value`` columns when present (:func:`add_q_values`), else computes them.
    """

    def q_of(prefix: str) -> np.ndarray:
        col = f"{prefix}q_value"
        return table[col].to_numpy() if col in table else benjamini_hochberg(table[f"{prefix}p_value"].to_numpy())

    q = q_of("")
    return {
        "n_units": int(len(table)),
        "mean_R": float(table["R"].mean()),
        "mean_abs_R": float(table["abs_R"].mean()),
        "null_mean_R": float(table["null_mean"].mean()),
        "null_mean_abs_R": float(table["null_abs_mean"].mean()),
        "fraction_significant_bh": float((q < alpha).mean()),
        "alpha": alpha,
        "null": str(table["null"].iloc[0]),
        "n_shuffles": int(table["n_shuffles"].iloc[0]),
        "sign_convention": "R > 0 counter-clockwise in (a - a0, da/dl - g0); portraits mostly turn clockwise (R < 0)",
        **{
            f"{pfx}_null_mean_abs_R": float(table[f"{pfx}_null_abs_mean"].mean())
            for pfx in EXTRA_PREFIX.values()
            if f"{pfx}_null_abs_mean" in table
        },
        **{
            f"{pfx}_fraction_significant_bh": float((q_of(f"{pfx}_") < alpha).mean())
            for pfx in EXTRA_PREFIX.values()
            if f"{pfx}_p_value" in table
        },
    }


N_NULL_KEPT = 20  # null values kept per unit for Fig 2's histogram


def rotation_block_tables(
    a: np.ndarray,
    u0: int = 0,
    n_shuffles: int = 1000,
    null: str = "points",
    trajectory: str = "mean",
    seed: int = 0,
    extra_nulls: tuple[str, ...] = (),
    n_null_kept: int = N_NULL_KEPT,
) -> dict[str, pd.DataFrame]:
    """Every rotation table of one unit block (§2.6, Fig 2); permutations drawn once.

    Parameters
    ----------
    a : ndarray, shape (n_samples, n_sublayers, n_units): ``rs[:, :, u0:u1]``

    Returns
    -------
    ``table``: :func:`unit_rotation_table`; ``traj``: the mean trajectory over samples,
    long format (``unit``, ``sublayer_index``, ``a_mean``; Fig 2's portraits); ``null``: R
    under ``null`` of the mean trajectory for the first ``n_null_kept`` permutations of each
    unit (``unit``, ``R_null``; Fig 2's null histogram).
    """
    a = np.asarray(a, dtype=np.float64)
    N, S, U = a.shape
    perms = block_permutations(u0, U, n_shuffles, S, seed)
    table = unit_rotation_table(a, u0, n_shuffles, null, trajectory, seed, tuple(extra_nulls), perms=perms)
    mean = a.mean(axis=0)  # (S, U)
    traj = pd.DataFrame({
        "unit": np.repeat(np.arange(u0, u0 + U), S),
        "sublayer_index": np.tile(np.arange(S), U),
        "a_mean": mean.T.ravel(),
    })
    kept = null_rotations(mean.T, perms[:, :n_null_kept], null)
    null_sample = pd.DataFrame({"unit": np.repeat(np.arange(u0, u0 + U), kept.shape[1]), "R_null": kept.ravel()})
    return {"table": table, "traj": traj, "null": null_sample}


def add_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg q-values over all units of a gathered table: ``q_value`` for the main
    null and ``<p>_q_value`` for each extra null present (in place; returns the table)."""
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    for pfx in EXTRA_PREFIX.values():
        if f"{pfx}_p_value" in table:
            table[f"{pfx}_q_value"] = benjamini_hochberg(table[f"{pfx}_p_value"].to_numpy())
    return table
