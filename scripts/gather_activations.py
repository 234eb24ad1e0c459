"""Rule gather_activations: concatenate the shard stores into one store per condition."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics.extraction import gather_shards

with rule_logging(snakemake):
    gather_shards(list(snakemake.input.shards), snakemake.output.store)
    print(f"gathered {len(snakemake.input.shards)} shards into {snakemake.output.store}")
