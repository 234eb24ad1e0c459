"""Rule extract_shard: capture one shard of samples (last token, or the kept positions) into its own store (§2.1)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics.extraction import extract_to_store, store_attrs
from transformer_dynamics.models import check_dims, load_model_spec
from transformer_dynamics.positions import select_positions
from transformer_dynamics.provenance import check_made_for

with rule_logging(snakemake):
    p = snakemake.params
    tokens = pd.read_parquet(snakemake.input.tokens)
    check_made_for(snakemake.input.tokens, {"n_samples": len(tokens)}, {"n_samples": p.made_for["n_samples"]})
    s0, s1 = p.rows
    width = int(tokens["n_tokens"].max())
    tokens = tokens.iloc[s0:s1]
    with open(snakemake.input.corpus_meta) as fh:
        corpus_meta = json.load(fh)
    check_made_for(snakemake.input.corpus_meta, corpus_meta, p.made_for)  # texts drawn for this config
    extra = {"shard_rows": [s0, s1]}
    keep = None
    if p.positions != "last":
        keep = select_positions(tokens["n_tokens"], tokens["sample"], p.positions, p.seed, p.include_bos)
        extra.update(positions=p.positions, include_bos=p.include_bos)
        print(f"{p.positions}: {sum(len(k) for k in keep)} token rows from {len(keep)} texts "
              f"({int(tokens['n_tokens'].sum())} tokens run through the model)")
    loaded = load_model_spec(p.model)
    check_dims(loaded.info, p.model, f"models.{snakemake.wildcards.model}")
    attrs = store_attrs(snakemake.wildcards.model, loaded, snakemake.wildcards.condition, corpus_meta, p.seed, **extra)
    batch = p.batch_size
    stats = extract_to_store(
        loaded,
        snakemake.output.store,
        tokens["sample"].to_numpy(),
        tokens["corpus_index"].to_numpy(),
        [list(t) for t in tokens["token_ids"]],
        keep=keep,
        texts=list(tokens["text"]) if "text" in tokens else None,
        token_width=width,
        row_chunk=p.row_chunk,
        unit_chunk=p.unit_chunk,
        max_batch=None if batch == "auto" else int(batch),
        attrs=attrs,
        store_dtype=p.store_dtype,
    )
    print(json.dumps(stats))
