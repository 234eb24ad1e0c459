"""Rule figure_perturbation_kinds: recovery after teleport, noise and swap perturbations."""
import pandas as pd

from transformer_dynamics import plotting
from transformer_dynamics.rulelog import rule_logging

with rule_logging(snakemake):
    w = snakemake.wildcards
    metrics = pd.concat([pd.read_parquet(p) for p in snakemake.input.metrics], ignore_index=True)
    fig = plotting.figure_perturbation_kinds(metrics, f"{w.model}, {w.condition}: recovery after perturbations")
    plotting.save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
