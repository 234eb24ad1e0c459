"""Rule figure1: Figure 1B-H from the statistics tables."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics.figures import stats as plot_stats
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    t = {k: pd.read_parquet(v) for k, v in snakemake.input.items()}
    w = snakemake.wildcards
    fig = plot_stats.figure1(t["units"], t["means"], t["rdist"], t["transitions"], t["sublayers"],
                           f"{w.model}, {w.condition} tokens: residual-stream statistics (Fig. 1B-H)")
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
