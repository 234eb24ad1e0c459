"""Rule train_autoencoder: the compressing autoencoder of §2.7 (Fig 3), on one view."""
from transformer_dynamics.rulelog import pin_threads, rule_logging, skip_unanalysed

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import torch

from transformer_dynamics import autoencoder as cae
from transformer_dynamics.models import resolve_device
from transformer_dynamics.views import open_view

with rule_logging(snakemake):
    # a position bucket that cannot be analysed gets empty outputs (its status says why)
    if not skip_unanalysed(snakemake):
        p, out = snakemake.params, snakemake.output
        c = p.cae
        # a store made for other settings, a missing or a corrupted chunk: an error, never a number
        acts = open_view(snakemake.input.store, made_for=p.made_for, **(p.view or {}))
        saved, tables = cae.train_and_evaluate(
            acts.sample_reader(), acts.n_samples, acts.d_model, c, p.seed, resolve_device(c["device"]),
            extra={"store": snakemake.input.store, "view": p.view}, groups=acts.row_texts(),
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
