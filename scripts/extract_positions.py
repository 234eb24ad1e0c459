"""Rule extract_positions: capture the kept token positions of every text into a position store."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics.extraction import store_attrs
from transformer_dynamics.token_store import extract_positions_to_store
from transformer_dynamics.models import check_dims, load_model_spec
from transformer_dynamics.positions import select_positions

with rule_logging(snakemake):
    p = snakemake.params
    tokens = pd.read_parquet(snakemake.input.tokens)
    with open(snakemake.input.corpus_meta) as fh:
        corpus_meta = json.load(fh)
    keep = select_positions(tokens["n_tokens"], tokens["sample"], p.positions, p.seed, p.include_bos)
    print(f"{p.positions}: {sum(len(k) for k in keep)} token rows from {len(keep)} texts "
          f"({int(tokens['n_tokens'].sum())} tokens run through the model)")
    loaded = load_model_spec(p.model)
    check_dims(loaded.info, p.model, f"models.{snakemake.wildcards.model}")
    attrs = store_attrs(snakemake.wildcards.model, loaded, snakemake.wildcards.condition, corpus_meta, p.seed,
                        positions=p.positions, include_bos=p.include_bos)
    batch = p.batch_size
    stats = extract_positions_to_store(
        loaded,
        snakemake.output.store,
        tokens["sample"].to_numpy(),
        tokens["corpus_index"].to_numpy(),
        [list(t) for t in tokens["token_ids"]],
        keep,
        texts=list(tokens["text"]) if "text" in tokens else None,
        token_chunk=p.token_chunk,
        unit_chunk=p.unit_chunk,
        max_batch=None if batch == "auto" else int(batch),
        attrs=attrs,
    )
    print(json.dumps(stats))
