"""Rule vector_stats: cosine similarity, velocity and magnitude of whole RS vectors (§2.3-2.4)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import unit_stats
from transformer_dynamics.views import open_view

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        acts = open_view(snakemake.input.store, made_for=snakemake.params.made_for, **(snakemake.params.view or {}))
        transitions, sublayers = unit_stats.vector_stats(acts.chunks(), acts.labels)
        transitions.to_parquet(snakemake.output.transitions, index=False)
        sublayers.to_parquet(snakemake.output.sublayers, index=False)
