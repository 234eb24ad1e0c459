"""Rule figure2: phase portraits and rotation counts vs the shuffle null."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics.figures import rotations as plot_rotations
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    w = snakemake.wildcards
    fig = plot_rotations.figure2(
        pd.read_parquet(snakemake.input.table), pd.read_parquet(snakemake.input.traj),
        pd.read_parquet(snakemake.input.null),
        f"{w.model}, {w.condition} tokens: unit phase portraits and rotations (Fig. 2)",
        snakemake.params.example_units,
    )
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
