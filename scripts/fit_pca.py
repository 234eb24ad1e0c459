"""Rule fit_pca: global PCA, PC trajectories, spectra per sublayer (§2.8, Fig 4A-C)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

from transformer_dynamics import pca
from transformer_dynamics.views import open_view

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        p, out = snakemake.params, snakemake.output
        acts = open_view(snakemake.input.store, made_for=p.made_for, **(p.view or {}))
        res, tables = pca.pca_tables(acts, p.n_components, p.memory_mb, None if p.device == "cpu" else p.device)
        res.save(out.model)
        for name, table in tables.items():
            table.to_parquet(out[name], index=False)
        print(tables["n_pcs"].to_string())
