"""Rule train_autoencoder: the compressing autoencoder of §2.7 (Fig 3)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import torch

from transformer_dynamics import autoencoder as cae
from transformer_dynamics.models import resolve_device
from transformer_dynamics.store import ActivationStore

with rule_logging(snakemake):
    c, out = snakemake.params.cae, snakemake.output
    acts = ActivationStore(snakemake.input.store)  # reads fail on a missing or corrupted chunk
    saved, tables = cae.train_and_evaluate(
        acts.sample_reader(), acts.n_samples, acts.d_model, c, snakemake.params.seed, resolve_device(c["device"]),
        extra={"store": snakemake.input.store},
    )
    tables["curve"].to_csv(out.curve, index=False)
    for name in ("codes", "explained", "distances"):
        tables[name].to_parquet(out[name], index=False)
    torch.save(saved, out.checkpoint)
    with open(out.diagnostics, "w") as fh:
        json.dump(tables["diagnostics"], fh, indent=2)
    print(tables["explained"].to_string())
    d = tables["diagnostics"]
    print(f"fit diagnostics: {d['status']}" + ("" if d["usable"] else " -- Fig 3 marks this fit as not a result"))
