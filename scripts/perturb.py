"""Rule perturb: teleport / noise / swap perturbations of the control prompt (§2.8, Fig 4D)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import pandas as pd

from transformer_dynamics import perturb
from transformer_dynamics.corpus import tokenize
from transformer_dynamics.models import check_dims, load_model_spec
from transformer_dynamics.pca import PCAResult
from transformer_dynamics.progress import Progress
from transformer_dynamics.views import open_view

with rule_logging(snakemake):
    p, out = snakemake.params, snakemake.output
    acts = open_view(snakemake.input.store, made_for=p.made_for)  # before the model loads: a stale store stops here
    loaded = load_model_spec(p.model)
    check_dims(loaded.info, p.model, f"models.{snakemake.wildcards.model}")
    ids = tokenize(loaded.tokenizer, [p.prompt])[0]
    control = perturb.control_trajectory(loaded.model, ids, loaded.pad_id)
    pca = PCAResult.load(snakemake.input.pca)
    perturb.pc_plane_table(pca.transform(control, 2)).to_parquet(out.control, index=False)
    scores = pd.read_parquet(snakemake.input.trajectories)[["pc1", "pc2"]].to_numpy()
    results = perturb.perturbation_runs(
        loaded.model, ids, control, pca, scores, acts, p.kinds, p.layers,
        p.grid, p.n_random, p.noise_scale, p.seed, loaded.pad_id,
        Progress(len(p.kinds) * len(p.layers), "perturbation set"),
    )
    for kind, runs_path, metrics_path in zip(p.kinds, out.runs, out.metrics):
        runs, metrics = results[kind]
        runs.to_parquet(runs_path, index=False)
        metrics.to_parquet(metrics_path, index=False)
