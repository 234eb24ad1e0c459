"""Gather rule body: concatenate per-block parquet tables, one output per named input list."""
import pandas as pd

from transformer_dynamics.rulelog import rule_logging

with rule_logging(snakemake):
    for name, path in snakemake.output.items():
        parts = [pd.read_parquet(p) for p in snakemake.input[name]]
        table = pd.concat(parts, ignore_index=True)
        table.to_parquet(path, index=False)
        print(f"{name}: {len(parts)} blocks, {len(table)} rows -> {path}")
