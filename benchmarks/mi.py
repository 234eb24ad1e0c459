"""Mutual information: scipy gaussian_kde reference vs the batched binned estimator.

    python benchmarks/mi.py [--n 1000] [--pairs-ref 30] [--pairs-fast 3840]

Data: real unit pairs (consecutive sublayers) from the SmolLM2 store when
results/smollm2-135m/activations/original.zarr exists, else correlated non-Gaussian
surrogates. Prints time per unit pair, speed-up, the largest difference on the pairs both
computed, and the projected time of the MI stage for SmolLM2 (576 units x 59 transitions)
and Llama 3.1 8B (4096 units x 63 transitions), single process.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from transformer_dynamics.mutual_info import mi_fast, mi_reference, mi_transitions

STORE = "results/smollm2-135m/activations/original.zarr"


def data(n: int, units: int) -> tuple[np.ndarray, str]:
    if os.path.exists(STORE):
        from transformer_dynamics import store

        a = store.read_units(STORE, 0, units)[:n]
        return a, f"SmolLM2 store, units 0-{units - 1}"
    rng = np.random.default_rng(0)
    a = rng.standard_t(4, size=(n, 60, units)).cumsum(axis=1)
    return a, "synthetic random walks (t-distributed steps)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pairs-ref", type=int, default=30)
    ap.add_argument("--units", type=int, default=64)
    args = ap.parse_args()
    a, src = data(args.n, args.units)
    N, S, U = a.shape
    T = S - 1
    srcs, dsts = np.arange(T), np.arange(1, S)
    t0 = time.perf_counter()
    fast = mi_transitions(a, srcs, dsts)
    t_fast = (time.perf_counter() - t0) / (T * U)
    rng = np.random.default_rng(1)
    picks = [(int(rng.integers(T)), int(rng.integers(U))) for _ in range(args.pairs_ref)]
    t0 = time.perf_counter()
    ref = np.array([mi_reference(a[:, t, u], a[:, t + 1, u]) for t, u in picks])
    t_ref = (time.perf_counter() - t0) / len(picks)
    got = np.array([fast[t, u] for t, u in picks])
    pair = mi_fast(a[:, [t for t, _ in picks], [u for _, u in picks]].T, a[:, [t + 1 for t, _ in picks], [u for _, u in picks]].T)
    diff = np.nanmax(np.abs(got - ref))
    print(f"data: {src}; N = {N}; torch threads = {torch.get_num_threads()}")
    print(f"{'estimator':<34}{'ms/pair':>10}{'speed-up':>10}")
    print(f"{'scipy gaussian_kde (reference)':<34}{t_ref * 1e3:>10.3f}{1:>10.0f}x")
    print(f"{'batched binned KDE (this package)':<34}{t_fast * 1e3:>10.3f}{t_ref / t_fast:>10.0f}x")
    print(f"max |fast - reference| over {len(picks)} pairs: {diff:.4f} nats (pairwise API: {np.nanmax(np.abs(pair - ref)):.4f})")
    for name, units, trans in (("SmolLM2-135M", 576, 59), ("Llama 3.1 8B", 4096, 63)):
        n = units * trans
        print(f"projected MI stage, {name} ({units} x {trans} = {n} pairs): reference {n * t_ref / 3600:.2f} h, "
              f"fast {n * t_fast / 60:.2f} min")


if __name__ == "__main__":
    main()
