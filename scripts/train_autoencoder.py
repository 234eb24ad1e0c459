"""Rule train_autoencoder: the compressing autoencoder of §2.7 (Fig 3)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import torch

from transformer_dynamics import autoencoder as cae
from transformer_dynamics.models import resolve_device
from transformer_dynamics.store import ActivationStore

with rule_logging(snakemake):
    c, out = snakemake.params.cae, snakemake.output
    acts = ActivationStore(snakemake.input.store)  # reads fail on a missing or corrupted chunk
    cfg = cae.CAEConfig(d_bottleneck=c["d_bottleneck"], k=c["k"], lr=c["lr"], max_epochs=c["max_epochs"],
                        patience=c["patience"], batch_size=c["batch_size"], scaling=c["scaling"],
                        seed=snakemake.params.seed)
    splits = cae.split_samples(acts.n_samples, c["split"], snakemake.params.seed)
    read = acts.sample_reader()
    device = resolve_device(c["device"])
    model, scaler, curve = cae.train_cae(read, splits, acts.d_model, cfg, device)
    curve.to_csv(out.curve, index=False)
    codes, ev = cae.encode_and_score(model, scaler, read, splits["test"], device)
    codes.to_parquet(out.codes, index=False)
    ev.to_parquet(out.explained, index=False)
    cae.bottleneck_distances(codes).to_parquet(out.distances, index=False)
    torch.save(cae.checkpoint(model.cpu(), scaler, cfg, {"splits": {k: v.tolist() for k, v in splits.items()},
                                                        "store": snakemake.input.store}), out.checkpoint)
    print(ev.to_string())
