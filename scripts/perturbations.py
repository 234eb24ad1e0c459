"""Rule perturb: teleport / noise / swap perturbations of the control prompt (§2.8, Fig 4D)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import numpy as np
import pandas as pd

from transformer_dynamics import perturb, store
from transformer_dynamics.capture import capture_last_token
from transformer_dynamics.corpus import tokenize
from transformer_dynamics.models import check_dims, load_model_spec
from transformer_dynamics.pca import PCAResult
from transformer_dynamics.progress import Progress

with rule_logging(snakemake):
    p, out = snakemake.params, snakemake.output
    loaded = load_model_spec(p.model)
    check_dims(loaded.info, p.model, f"models.{snakemake.wildcards.model}")
    ids = tokenize(loaded.tokenizer, [p.prompt])[0]
    pad = loaded.pad_id
    control = next(iter(capture_last_token(loaded.model, [ids], pad_id=pad)))[1][0]
    pca = PCAResult.load(snakemake.input.pca)
    traj = pd.read_parquet(snakemake.input.trajectories)
    scores = traj[["pc1", "pc2"]].to_numpy()
    zc = pca.transform(control, 2)
    pd.DataFrame({"sublayer_index": np.arange(len(zc)), "pc1": zc[:, 0], "pc2": zc[:, 1]}).to_parquet(out.control, index=False)
    g = store.open_store(snakemake.input.store)
    bar, n_done = Progress(len(p.kinds) * len(p.layers), "perturbation set"), 0
    for kind, runs_path, metrics_path in zip(p.kinds, out.runs, out.metrics):
        runs, metrics = [], []
        for layer in p.layers:
            pool = store.read_rs(g, (slice(None), 2 * layer, slice(None))) if kind == "swap" else None
            rows, mode, targets = perturb.perturbation_rows(kind, layer, control, pca, scores, pool, p.grid,
                                                            p.n_random, p.noise_scale, p.seed)
            res = perturb.run_edited(loaded.model, ids, layer, rows, mode, pad)
            Z = pca.transform(res[:, 2 * layer :], 2)
            B, T, _ = Z.shape
            runs.append(pd.DataFrame({
                "kind": kind, "layer": layer, "run": np.repeat(np.arange(B), T),
                "sublayer_index": np.tile(np.arange(2 * layer, 2 * layer + T), B),
                "target_pc1": np.repeat(targets[:, 0], T), "target_pc2": np.repeat(targets[:, 1], T),
                "pc1": Z[:, :, 0].ravel(), "pc2": Z[:, :, 1].ravel(),
            }))
            m = perturb.trajectory_metrics(res, control, pca, 2 * layer)
            metrics.append(m.assign(kind=kind, layer=layer))
            print(f"{kind} at layer {layer}: {B} runs, final mse_pc {m['mse_pc'].iloc[-1]:.3g}")
            n_done += 1
            bar.update(n_done, f"{kind} at layer {layer}", force=True)
        pd.concat(runs, ignore_index=True).to_parquet(runs_path, index=False)
        pd.concat(metrics, ignore_index=True).to_parquet(metrics_path, index=False)
