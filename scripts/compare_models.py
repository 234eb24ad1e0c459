"""Rule compare_models: depth profiles of several models on normalised depth."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics.figures import models as plot_models
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    i, models = snakemake.input, snakemake.params.models
    tables = {
        m: {k: pd.read_parquet(i[k][j]) for k in ("units", "transitions", "rotations", "n_pcs")}
        for j, m in enumerate(models)
    }
    fig = plot_models.figure_compare_models(tables)
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
