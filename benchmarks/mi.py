"""Mutual information: scipy gaussian_kde reference vs the batched binned estimator, on real
and on heavy-tailed data side by side.

    python benchmarks/mi.py [--store results/smollm2-135m/activations/original.zarr]
                            [--n 1000] [--units 64] [--pairs-ref 30]

Data sets (each N samples x S sublayers x ``--units`` units, MI of every unit between
consecutive sublayers, as the workflow computes it):
  - real: the first ``--units`` units of a SmolLM2 store (skipped when no store is given or found),
  - t(2): random walks over sublayers with Student-t (2 degrees of freedom) steps,
  - lognormal: exp of Gaussian random walks (skewed, long right tail),
  - massive outliers: Gaussian random walks in which 1 % of samples are 100x larger.
For each: time per unit pair of ``mi_transitions`` over the whole block (one batched call,
what a unit-block job does), time per pair of the scipy reference on ``--pairs-ref`` random
pairs, the speed-up, and the largest |fast - reference| on those pairs (target: >= 100x and
<= 0.01 nats on every data set).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from transformer_dynamics.mutual_info import mi_reference, mi_transitions

STORE = "results/smollm2-135m/activations/original.zarr"


def datasets(args: argparse.Namespace) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    N, S, U = args.n, args.sublayers, args.units
    out = {}
    if args.store and os.path.exists(args.store):
        from transformer_dynamics import store

        out["real (SmolLM2)"] = store.read_units(args.store, 0, U)[:N]
    out["t(2) random walks"] = rng.standard_t(2, size=(N, S, U)).cumsum(axis=1)
    out["lognormal"] = np.exp(0.3 * rng.normal(size=(N, S, U)).cumsum(axis=1) / np.sqrt(np.arange(1, S + 1))[None, :, None])
    g = rng.normal(size=(N, S, U)).cumsum(axis=1)
    rows = rng.random((N, 1, U)) < 0.01
    out["massive outliers (1 %, 100x)"] = np.where(rows, 100 * g, g)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=STORE)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sublayers", type=int, default=60)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--pairs-ref", type=int, default=30)
    args = ap.parse_args()
    print(f"N = {args.n}; torch threads = {torch.get_num_threads()}")
    print("| data | pairs | fast ms/pair | scipy ms/pair | speed-up | max abs diff (nats) | within 0.01 |")
    print("|---|---|---|---|---|---|---|")
    for name, a in datasets(args).items():
        N, S, U = a.shape
        T = S - 1
        srcs, dsts = np.arange(T), np.arange(1, S)
        mi_transitions(a[:, :3], srcs[:2], dsts[:2])  # warm-up
        t0 = time.perf_counter()
        fast = mi_transitions(a, srcs, dsts)
        t_fast = (time.perf_counter() - t0) / (T * U)
        rng = np.random.default_rng(1)
        picks = [(int(rng.integers(T)), int(rng.integers(U))) for _ in range(args.pairs_ref)]
        t0 = time.perf_counter()
        ref = np.array([mi_reference(a[:, t, u], a[:, t + 1, u]) for t, u in picks])
        t_ref = (time.perf_counter() - t0) / len(picks)
        diff = float(np.nanmax(np.abs(np.array([fast[t, u] for t, u in picks]) - ref)))
        print(f"| {name} | {T * U} | {t_fast * 1e3:.3f} | {t_ref * 1e3:.1f} | {t_ref / t_fast:.0f}x | {diff:.4f} | "
              f"{'yes' if diff <= 0.01 else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
