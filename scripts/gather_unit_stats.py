"""Rule gather_unit_stats: the per-block unit tables, means and correlation distributions concatenated."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics.tables import concat_blocks

with rule_logging(snakemake):
    for name, path in snakemake.output.items():
        table = concat_blocks(snakemake.input[name])
        table.to_parquet(path, index=False)
        print(f"{name}: {len(snakemake.input[name])} blocks, {len(table)} rows -> {path}")
