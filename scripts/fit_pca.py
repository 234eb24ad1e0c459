"""Rule fit_pca: global PCA, PC trajectories, spectra per sublayer (§2.8, Fig 4A-C)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import numpy as np
import pandas as pd

from transformer_dynamics import pca, store

with rule_logging(snakemake):
    p, out = snakemake.params, snakemake.output
    g = store.open_store(snakemake.input.store)
    labels = list(g["sublayer"][:])
    rows = pca.update_rows(int(g.attrs["sample_chunk"]))
    res = pca.fit_pca((rs for _, rs in store.iter_samples(g, rows)), p.n_components)
    res.save(out.model)
    pca.trajectories(store.iter_samples(g), res, 2).to_parquet(out.trajectories, index=False)
    pd.DataFrame({
        "component": np.arange(1, len(res.explained_variance_ratio) + 1),
        "explained_variance_ratio": res.explained_variance_ratio,
        "cumulative": np.cumsum(res.explained_variance_ratio),
        "singular_value": res.singular_values,
    }).to_parquet(out.spectrum, index=False)
    # per-sublayer spectra in groups of sublayers whose D x D scatter matrices fit the budget
    N, S, D = g["rs"].shape
    per_group = pca.sublayer_group_size(N, D, p.memory_mb)
    parts = []
    for s0 in range(0, S, per_group):
        sl = slice(s0, min(S, s0 + per_group))
        spec = pca.per_sublayer_spectra((rs[:, sl] for _, rs in store.iter_samples(g, rows)), labels[sl], p.n_components, N)
        spec["sublayer_index"] += s0
        parts.append(spec)
    spectra = pd.concat(parts, ignore_index=True)
    spectra.to_parquet(out.sublayer_spectra, index=False)
    n_pcs = pca.n_components_for(spectra, 0.9).merge(pca.n_components_for(spectra, 0.5))
    n_pcs.to_parquet(out.n_pcs, index=False)
    print(n_pcs.to_string())
