"""Rule figure4: PCA trajectories, spectra and teleport perturbations (Fig. 4)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics.figures import pca as plot_pca
from transformer_dynamics.figures.style import save

with rule_logging(snakemake):
    i, w = snakemake.input, snakemake.wildcards
    tele = pd.read_parquet(i.teleport) if i.get("teleport") else None
    fig = plot_pca.figure4(pd.read_parquet(i.traj), pd.read_parquet(i.spectrum), pd.read_parquet(i.spectra),
                           pd.read_parquet(i.n_pcs), pd.read_parquet(i.control), tele,
                           f"{w.model}, {w.condition} tokens: PCA trajectories and perturbations (Fig. 4)",
                           snakemake.params.arrow_steps)
    save(fig, snakemake.output.png, snakemake.output.pdf, snakemake.params.dpi)
