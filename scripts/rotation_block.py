"""Rule rotation_block: rotation counts and their shuffle null for one unit block (§2.6)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import numpy as np
import pandas as pd

from transformer_dynamics import rotations, store

N_NULL_KEPT = 20  # null values kept per unit for the figure's histogram

with rule_logging(snakemake):
    p = snakemake.params
    u0, u1 = p.units
    a = store.read_units(snakemake.input.store, u0, u1)
    table = rotations.unit_rotation_table(a, u0, p.n_shuffles, p.null, p.trajectory, p.seed, tuple(p.extra_nulls))
    table.to_parquet(snakemake.output.table, index=False)
    mean = a.mean(axis=0)  # (S, U)
    S, U = mean.shape
    pd.DataFrame({
        "unit": np.repeat(np.arange(u0, u1), S),
        "sublayer_index": np.tile(np.arange(S), U),
        "a_mean": mean.T.ravel(),
    }).to_parquet(snakemake.output.traj, index=False)
    perms = np.stack([rotations.unit_permutations(u, p.n_shuffles, S, p.seed)[:N_NULL_KEPT] for u in range(u0, u1)])
    null = rotations.null_rotations(mean.T, perms, p.null)
    pd.DataFrame({"unit": np.repeat(np.arange(u0, u1), null.shape[1]), "R_null": null.ravel()}).to_parquet(
        snakemake.output.null, index=False
    )
    print(table.describe().to_string())
