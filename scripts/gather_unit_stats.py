"""Rule gather_unit_stats: the per-block unit tables, means and correlation distributions concatenated."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics.tables import concat_blocks

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        for name, path in snakemake.output.items():
            table = concat_blocks(snakemake.input[name])
            table.to_parquet(path, index=False)
            print(f"{name}: {len(snakemake.input[name])} blocks, {len(table)} rows -> {path}")
