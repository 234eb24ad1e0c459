"""Rule fit_pca: global PCA, PC trajectories, spectra per sublayer (§2.8, Fig 4A-C)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import pca
from transformer_dynamics.store import ActivationStore

with rule_logging(snakemake):
    p, out = snakemake.params, snakemake.output
    res, tables = pca.pca_tables(ActivationStore(snakemake.input.store), p.n_components, p.memory_mb)
    res.save(out.model)
    for name, table in tables.items():
        table.to_parquet(out[name], index=False)
    print(tables["n_pcs"].to_string())
