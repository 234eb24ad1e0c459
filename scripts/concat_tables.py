"""Gather rule body: concatenate per-block parquet tables, one output per named input list."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd


with rule_logging(snakemake):
    for name, path in snakemake.output.items():
        parts = [pd.read_parquet(p) for p in snakemake.input[name]]
        table = pd.concat(parts, ignore_index=True)
        table.to_parquet(path, index=False)
        print(f"{name}: {len(parts)} blocks, {len(table)} rows -> {path}")
