"""Rule rotation_block: rotation counts and their shuffle null for one unit block (§2.6)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import time

from transformer_dynamics import rotations
from transformer_dynamics.progress import Progress
from transformer_dynamics.views import open_view

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        p = snakemake.params
        u0, u1 = p.units
        a = open_view(snakemake.input.store, made_for=p.made_for, **(p.view or {})).units(u0, u1)
        say, t0 = Progress(1).say, time.perf_counter()
        say(f"units {u0}-{u1 - 1}: {p.n_shuffles} shuffles x {1 + len(p.extra_nulls)} null(s), {a.shape[0]} samples")
        tables = rotations.rotation_block_tables(a, u0, p.n_shuffles, p.null, p.trajectory, p.seed, p.extra_nulls)
        say(f"units {u0}-{u1 - 1}: done in {time.perf_counter() - t0:.1f} s")
        for name, table in tables.items():
            table.to_parquet(snakemake.output[name], index=False)
        print(tables["table"].describe().to_string())
