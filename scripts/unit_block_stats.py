"""Rule unit_block_stats: means, Pearson r, MI and correlation distributions of one unit block."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import store, unit_stats

with rule_logging(snakemake):
    u0, u1 = snakemake.params.units
    g = store.open_store(snakemake.input.store)
    labels = list(g["sublayer"][:])
    a = store.read_units(g, u0, u1)
    unit_stats.block_unit_table(a, labels, u0, mi_grid=snakemake.params.mi_grid).to_parquet(snakemake.output.units, index=False)
    unit_stats.unit_means(a, labels, u0).to_parquet(snakemake.output.means, index=False)
    tr = unit_stats.transition_table(labels, snakemake.params.correlation_pairs)
    r = unit_stats.pearson(a, tr["src"].to_numpy(), tr["dst"].to_numpy())
    unit_stats.correlation_distribution(r, u0).to_parquet(snakemake.output.rdist, index=False)
    print(f"units {u0}-{u1 - 1}: {a.shape[0]} samples, {len(labels)} sublayers, {len(tr)} correlation pairs")
