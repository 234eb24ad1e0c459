"""Rule rotation_block: rotation counts and their shuffle null for one unit block (§2.6)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import rotations
from transformer_dynamics.store import ActivationStore

with rule_logging(snakemake):
    p = snakemake.params
    u0, u1 = p.units
    a = ActivationStore(snakemake.input.store).units(u0, u1)
    tables = rotations.rotation_block_tables(a, u0, p.n_shuffles, p.null, p.trajectory, p.seed, p.extra_nulls)
    for name, table in tables.items():
        table.to_parquet(snakemake.output[name], index=False)
    print(tables["table"].describe().to_string())
