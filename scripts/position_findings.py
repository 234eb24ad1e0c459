"""Rule position_findings: every finding per position bucket and condition, and each bucket's
CAE explained variance (docs/positions.md)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics.views import cae_by_bucket, findings_by_bucket

with rule_logging(snakemake):
    p, i = snakemake.params, snakemake.input
    tables, n_tokens, skipped, explained = {}, {}, {}, {}
    k = 0
    for c in p.conditions:  # inputs: conditions outer, buckets inner (every_bucket_and_condition)
        for b in p.buckets:
            with open(i.status[k]) as fh:
                status = json.load(fh)
            tables.setdefault(b, {})[c] = (
                {name: pd.read_parquet(i[name][k]) for name in p.tables} if status["analysed"] else None
            )
            explained.setdefault(b, {})[c] = pd.read_parquet(i.cae[k])
            n_tokens.setdefault(b, {})[c] = status["n_tokens"]
            skipped.setdefault(b, {})[c] = status["reason"] or ""
            k += 1
    th = {**p.thresholds, "n_components": p.n_components}
    table = findings_by_bucket(tables, n_tokens, skipped, th, p.seed)
    table.to_csv(snakemake.output.csv, index=False)
    cae_by_bucket(explained, n_tokens).to_csv(snakemake.output.cae, index=False)
    print(table.pivot_table(index="key", columns=["condition", "bucket"], values="value", aggfunc="first").to_string())
