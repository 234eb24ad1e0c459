"""Rule figure_perturbation_kinds: recovery after teleport, noise and swap perturbations."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics.figures import pca as plot_pca
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    w = snakemake.wildcards
    metrics = pd.concat([pd.read_parquet(p) for p in snakemake.input.metrics], ignore_index=True)
    fig = plot_pca.figure_perturbation_kinds(metrics, f"{w.model}, {w.condition}: recovery after perturbations")
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
