"""Rule vector_stats: cosine similarity, velocity and magnitude of whole RS vectors (§2.3-2.4)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import store, unit_stats

with rule_logging(snakemake):
    g = store.open_store(snakemake.input.store)
    labels = list(g["sublayer"][:])
    chunks = (rs for _, rs in store.iter_samples(g))
    transitions, sublayers = unit_stats.vector_stats(chunks, labels)
    transitions.to_parquet(snakemake.output.transitions, index=False)
    sublayers.to_parquet(snakemake.output.sublayers, index=False)
