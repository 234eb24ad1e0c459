"""Rule unit_block_stats: means, Pearson r, MI and correlation distributions of one unit block."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import unit_stats
from transformer_dynamics.views import open_view

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        u0, u1 = snakemake.params.units
        acts = open_view(snakemake.input.store, made_for=snakemake.params.made_for, **(snakemake.params.view or {}))
        a = acts.units(u0, u1)
        tables = unit_stats.unit_block_tables(
            a, acts.labels, u0, snakemake.params.mi_grid, snakemake.params.correlation_pairs, progress=True
        )
        for name, table in tables.items():
            table.to_parquet(snakemake.output[name], index=False)
        print(f"units {u0}-{u1 - 1}: {a.shape[0]} samples, {len(acts.labels)} sublayers")
