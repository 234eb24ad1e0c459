"""Rule figure_positions: the paper's findings against token position (beyond the paper)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics.figures.positions import figure_findings_by_position
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    table = pd.read_csv(snakemake.input.csv)
    cae = pd.read_csv(snakemake.input.cae)
    fig = figure_findings_by_position(table, cae)
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
