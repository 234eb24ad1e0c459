"""Rule position_autoencoder: the CAE (§2.7) on pooled tokens, scored per position bucket."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import torch

from transformer_dynamics.models import resolve_device
from transformer_dynamics.views import cae_by_bucket

with rule_logging(snakemake):
    p, out = snakemake.params, snakemake.output
    saved, curve, explained = cae_by_bucket(snakemake.input.store, p.cae, p.seed, p.cap, resolve_device(p.cae["device"]))
    curve.to_csv(out.curve, index=False)
    explained.to_parquet(out.explained, index=False)
    torch.save(saved, out.checkpoint)
    print(explained.groupby("bucket")["explained_variance"].mean().to_string())
