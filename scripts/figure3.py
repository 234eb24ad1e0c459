"""Rule figure3: the compressing autoencoder's trajectories (Fig. 3)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics.figures import autoencoder as plot_autoencoder
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    i, w = snakemake.input, snakemake.wildcards
    with open(i.diagnostics) as fh:
        diagnostics = json.load(fh)
    fig = plot_autoencoder.figure3(pd.read_csv(i.curve), pd.read_parquet(i.codes), pd.read_parquet(i.distances),
                                   pd.read_parquet(i.explained),
                                   f"{w.model}, {w.condition} tokens: compressing autoencoder (Fig. 3)",
                                   diagnostics=diagnostics)
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
