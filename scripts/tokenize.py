"""Rule tokenize: BOS-first token ids and the shuffled-token control (§2.1)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics import corpus
from transformer_dynamics.models import load_tokenizer, model_context

from transformer_dynamics.provenance import check_made_for

with rule_logging(snakemake):
    with open(snakemake.input.corpus_meta) as fh:  # the samples must be drawn for this config
        check_made_for(snakemake.input.samples, json.load(fh), snakemake.params.made_for)
    samples = pd.read_parquet(snakemake.input.samples)
    spec = snakemake.params.tokenizer
    tokenizer = load_tokenizer(**spec)
    context = model_context(spec["source"], spec.get("architecture"))
    print(f"model context: {context} tokens; longer texts: {snakemake.params.long_texts}")
    for condition, path in zip(snakemake.params.conditions, snakemake.output.tokens):
        table = corpus.token_table(samples, tokenizer, condition, snakemake.params.seed,
                                   max_tokens=context, long_texts=snakemake.params.long_texts)
        table.to_parquet(path, index=False)
        print(f"{condition}: {len(table)} samples, {table['n_tokens'].sum()} tokens -> {path}")
