"""Rule position_bucket: every table the findings read, on the tokens of one position bucket."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics import position_analysis
from transformer_dynamics.token_store import bucket_store

with rule_logging(snakemake):
    p, out = snakemake.params, snakemake.output
    acts = bucket_store(snakemake.input.store, p.bucket, p.cap, p.seed)
    reason = position_analysis.degenerate_reason(acts, p.min_tokens)
    status = {"bucket": p.bucket, "n_tokens": acts.n_samples, "analysed": reason is None, "reason": reason}
    if reason is None:
        tables = position_analysis.bucket_tables(
            acts, p.unit_block, p.mi_grid, p.correlation_pairs, p.rotation, p.n_components, p.memory_mb, p.seed
        )
    else:  # empty tables: the findings report the bucket as not analysed, with the reason
        tables = {name: pd.DataFrame() for name in position_analysis.TABLES}
    for name in position_analysis.TABLES:
        tables[name].to_parquet(out[name], index=False)
    with open(out.status, "w") as fh:
        json.dump(status, fh, indent=2)
    print(json.dumps(status))
