"""Rotation counts with 1000 layer shuffles for all units.

    python benchmarks/rotations.py [--shuffles 1000]

Uses the SmolLM2 store when it exists (576 units), else random walks. Prints the time per
unit block of 64 and for all units, for each null model.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from transformer_dynamics.rotations import unit_rotation_table

STORE = "results/smollm2-135m/activations/original.zarr"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shuffles", type=int, default=1000)
    ap.add_argument("--block", type=int, default=64)
    args = ap.parse_args()
    if os.path.exists(STORE):
        from transformer_dynamics import store

        a = store.read_units(STORE, 0, 576)
        src = "SmolLM2 store"
    else:
        a = np.random.default_rng(0).normal(size=(1000, 60, 576)).cumsum(axis=1)
        src = "random walks"
    N, S, U = a.shape
    print(f"data: {src}, {U} units x {S} sublayers, {args.shuffles} shuffles per unit")
    print(f"{'null':<12}{'s/block':>9}{'s/all units':>13}{'mean |R|':>10}{'null |R|':>10}")
    for null in ("points", "activations", "increments"):
        t0 = time.perf_counter()
        parts = [unit_rotation_table(a[:, :, u0 : u0 + args.block], u0, args.shuffles, null) for u0 in range(0, U, args.block)]
        total = time.perf_counter() - t0
        R = np.concatenate([p["abs_R"] for p in parts])
        nR = np.concatenate([p["null_abs_mean"] for p in parts])
        print(f"{null:<12}{total / len(parts):>9.2f}{total:>13.2f}{R.mean():>10.2f}{nR.mean():>10.2f}")


if __name__ == "__main__":
    main()
