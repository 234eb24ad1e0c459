"""Perturbations of the residual stream: teleport (§2.8, §3.4, Fig 4D) and beyond.

At the last token of a control prompt ("I'm sorry, Dave. I'm afraid I can't do that."), the
residual stream entering layer l (the input of its attention block) is replaced or shifted,
the model runs on, and every sublayer's residual vector is recorded. Kinds:

``teleport`` (the paper)
    an ``n x n`` grid over the range of the PC1-PC2 scores, mapped back to model space with
    ``x = z V[:, :2]^T + mu``, replaces the residual.
``noise``
    Gaussian noise, rescaled to a norm of ``noise_scale * ||h_l||`` (the control's residual
    norm at that layer), is added.
``swap``
    the residual of another sample (drawn from the activation store, same sublayer) replaces it.

All perturbed copies of the prompt run as one batch per layer. Outputs are trajectories in
the PC1-PC2 plane and, per sublayer from l on, the mean squared distance of the perturbed
trajectories to the control (in the PC plane and in the full space, per dimension) and
their variance (trace of the covariance over perturbations, in both spaces).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .capture import ResidualCapture, capture
from .pca import PCAResult
from .seeds import stream
from .sublayers import pre_attention_index

def teleport_grid(scores: np.ndarray, n: int = 10) -> np.ndarray:
    """``(n*n, 2)`` uniform grid over ``[min, max]`` of the PC1 and PC2 scores."""
    lo, hi = scores.min(axis=0), scores.max(axis=0)
    g1, g2 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    return np.stack(np.meshgrid(g1, g2, indexing="xy"), axis=-1).reshape(-1, 2)


def run_edited(model: Any, token_ids: Sequence[int], layer: int, new_rows: np.ndarray, mode: str = "replace",
               pad_id: int = 0, reuse_prefix: bool = True) -> np.ndarray:
    """Residual trajectories ``(B, 2L, D)`` of the prompt with its last-token residual entering
    ``layer`` replaced by (``mode='replace'``) or shifted by (``'add'``) each row of ``new_rows``.

    An edit of the last token changes nothing at the earlier tokens (causal attention), so
    with ``reuse_prefix`` the prompt's other tokens run once, their keys and values are
    cached, and the ``B`` edited copies of the last token run as one batch against that
    cache: ``B`` tokens instead of ``B x T`` (the same function; floating-point results
    differ from the full recomputation at rounding level, measured in docs/speed.md).
    ``reuse_prefix=False`` runs all ``B`` full copies of the prompt in one batch.
    """
    rows = torch.as_tensor(np.asarray(new_rows), dtype=next(model.parameters()).dtype,
                           device=next(model.parameters()).device)

    def edit(h: torch.Tensor) -> torch.Tensor:
        return rows if mode == "replace" else h + rows

    if reuse_prefix and len(token_ids) > 1:
        return _run_edited_last_token(model, token_ids, layer, edit, len(rows))
    seqs = [list(token_ids)] * len(rows)
    out = np.empty((len(rows), 0))
    for idx, rs in capture(model, seqs, max_batch=len(rows), pad_id=pad_id, edits={layer: edit}):
        out = np.empty((len(rows),) + rs.shape[1:], dtype=np.float32) if out.size == 0 else out
        out[idx] = rs
    return out


@torch.inference_mode()
def _run_edited_last_token(model: Any, token_ids: Sequence[int], layer: int, edit: Any, B: int) -> np.ndarray:
    """:func:`run_edited` with the prompt's prefix run once and cached (see there)."""
    device = next(model.parameters()).device
    prefix = torch.tensor([list(token_ids[:-1])], device=device)
    out = model.base_model(input_ids=prefix, use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    cache.batch_repeat_interleave(B)
    last = torch.full((B, 1), int(token_ids[-1]), device=device)
    with ResidualCapture(model, edits={layer: edit}) as cap:
        out = cap.run(last, torch.zeros(B, dtype=torch.long, device=device), past_key_values=cache)
    return out.float().cpu().numpy()


def trajectory_metrics(perturbed: np.ndarray, control: np.ndarray, pca: PCAResult, start: int) -> pd.DataFrame:
    """Per sublayer from ``start``: distance to the control and spread of the perturbed runs.

    Parameters
    ----------
    perturbed : (B, 2L, D); control : (2L, D)
    """
    P = perturbed[:, start:].astype(np.float64)
    C = control[start:].astype(np.float64)
    Zp = pca.transform(P, 2)
    Zc = pca.transform(C, 2)
    return pd.DataFrame(
        {
            "sublayer_index": np.arange(start, control.shape[0]),
            "steps_after": np.arange(control.shape[0] - start),
            "mse_pc": ((Zp - Zc) ** 2).sum(-1).mean(0),
            "var_pc": Zp.var(axis=0, ddof=1).sum(-1) if len(P) > 1 else 0.0,
            "mse_full": ((P - C) ** 2).mean(-1).mean(0),
            "var_full": P.var(axis=0, ddof=1).mean(-1) if len(P) > 1 else 0.0,
            "control_norm": np.linalg.norm(C, axis=-1),
            "control_ms": (C**2).mean(-1),
        }
    )


def perturbation_rows(kind: str, layer: int, control: np.ndarray, pca: PCAResult, scores: np.ndarray | None,
                      pool: np.ndarray | None, grid: int, n_random: int, noise_scale: float, seed: int
                      ) -> tuple[np.ndarray, str, np.ndarray]:
    """The vectors to apply for one kind at one layer: ``(rows, mode, targets_in_pc_plane)``."""
    h = control[pre_attention_index(layer)].astype(np.float64)
    if kind == "teleport":
        if scores is None:
            raise ValueError("teleport needs the PC scores of the data")
        Z = teleport_grid(scores, grid)
        return pca.inverse(Z), "replace", Z
    rng = stream("perturb.draw", seed, layer, {"noise": 1, "swap": 2}[kind])
    if kind == "noise":
        eps = rng.normal(size=(n_random, h.shape[0]))
        eps *= noise_scale * np.linalg.norm(h) / np.linalg.norm(eps, axis=1, keepdims=True)
        return eps, "add", pca.transform(h + eps, 2)
    if kind == "swap":
        if pool is None:
            raise ValueError("swap needs residual vectors of other samples at this layer")
        pick = rng.choice(len(pool), size=min(n_random, len(pool)), replace=False)
        return pool[pick].astype(np.float64), "replace", pca.transform(pool[pick], 2)
    raise ValueError(f"unknown perturbation kind {kind!r} (teleport | noise | swap)")


def control_trajectory(model: Any, token_ids: Sequence[int], pad_id: int = 0) -> np.ndarray:
    """The unperturbed prompt's residual vectors at its last token, ``(2L, D)``."""
    return next(iter(capture(model, [list(token_ids)], pad_id=pad_id)))[1][0]


def pc_plane_table(Z: np.ndarray, start: int = 0) -> pd.DataFrame:
    """A ``(2L - start, 2)`` trajectory in the PC1-PC2 plane as ``sublayer_index``, ``pc1``, ``pc2``."""
    return pd.DataFrame({"sublayer_index": np.arange(start, start + len(Z)), "pc1": Z[:, 0], "pc2": Z[:, 1]})


def perturbation_runs(
    model: Any,
    token_ids: Sequence[int],
    control: np.ndarray,
    pca: PCAResult,
    scores: np.ndarray,
    store: Any,
    kinds: Sequence[str],
    layers: Sequence[int],
    grid: int,
    n_random: int,
    noise_scale: float,
    seed: int,
    pad_id: int = 0,
    log: Any = None,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Every perturbation of the control prompt, per kind and layer (§2.8, Fig 4D).

    Parameters
    ----------
    control : (2L, D), the unperturbed prompt (:func:`control_trajectory`)
    scores : (n, 2) PC1-PC2 scores of the data (the teleport grid spans their range)
    store : an :class:`~transformer_dynamics.store.ActivationStore`; ``swap`` draws the
        residual of other samples entering the layer from it (``store.layer_input(layer)``)
    log : a :class:`~transformer_dynamics.progress.Progress`-like object with
        ``update(done, note, force)``, or None

    Returns
    -------
    ``{kind: (runs, metrics)}``: ``runs`` has one row per run x sublayer from the perturbed
    layer on (``kind``, ``layer``, ``run``, ``sublayer_index``, ``target_pc1/2``, ``pc1/2``);
    ``metrics`` is :func:`trajectory_metrics` per layer with ``kind`` and ``layer``.
    """
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    done = 0
    for kind in kinds:
        runs, metrics = [], []
        for layer in layers:
            start = pre_attention_index(layer)
            pool = store.layer_input(layer) if kind == "swap" else None
            rows, mode, targets = perturbation_rows(kind, layer, control, pca, scores, pool, grid, n_random,
                                                    noise_scale, seed)
            res = run_edited(model, token_ids, layer, rows, mode, pad_id)
            Z = pca.transform(res[:, start:], 2)
            B, T, _ = Z.shape
            runs.append(pd.DataFrame({
                "kind": kind, "layer": layer, "run": np.repeat(np.arange(B), T),
                "sublayer_index": np.tile(np.arange(start, start + T), B),
                "target_pc1": np.repeat(targets[:, 0], T), "target_pc2": np.repeat(targets[:, 1], T),
                "pc1": Z[:, :, 0].ravel(), "pc2": Z[:, :, 1].ravel(),
            }))
            m = trajectory_metrics(res, control, pca, start)
            metrics.append(m.assign(kind=kind, layer=layer))
            print(f"{kind} at layer {layer}: {B} runs, final mse_pc {m['mse_pc'].iloc[-1]:.3g}")
            done += 1
            if log is not None:
                log.update(done, f"{kind} at layer {layer}", force=True)
        out[kind] = (pd.concat(runs, ignore_index=True), pd.concat(metrics, ignore_index=True))
    return out
