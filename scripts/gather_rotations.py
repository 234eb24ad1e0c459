"""Rule gather_rotations: concatenate rotation blocks; summary with Benjamini-Hochberg."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

from transformer_dynamics import rotations
from transformer_dynamics.tables import concat_blocks

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        tables = {name: concat_blocks(snakemake.input[name]) for name in ("table", "traj", "null")}
        rotations.add_q_values(tables["table"])
        for name, table in tables.items():
            table.to_parquet(snakemake.output[name], index=False)
        summary = rotations.rotation_summary(tables["table"])
        with open(snakemake.output.summary, "w") as fh:
            json.dump(summary, fh, indent=2)
        print(json.dumps(summary, indent=2))
