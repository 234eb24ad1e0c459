"""Rule gather_rotations: concatenate rotation blocks; summary with Benjamini-Hochberg."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics import rotations

with rule_logging(snakemake):
    for name in ("table", "traj", "null"):
        pd.concat([pd.read_parquet(p) for p in snakemake.input[name]], ignore_index=True).to_parquet(
            snakemake.output[name], index=False
        )
    table = pd.read_parquet(snakemake.output.table)
    table["q_value"] = rotations.benjamini_hochberg(table["p_value"].to_numpy())
    for pfx in rotations.EXTRA_PREFIX.values():
        if f"{pfx}_p_value" in table:
            table[f"{pfx}_q_value"] = rotations.benjamini_hochberg(table[f"{pfx}_p_value"].to_numpy())
    table.to_parquet(snakemake.output.table, index=False)
    summary = rotations.rotation_summary(table)
    with open(snakemake.output.summary, "w") as fh:
        json.dump(summary, fh, indent=2)
    print(json.dumps(summary, indent=2))
