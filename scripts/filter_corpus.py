"""Rule filter_corpus: length filter, deduplicate, draw n_samples texts (§2.1)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

from transformer_dynamics import corpus

with rule_logging(snakemake):
    p = snakemake.params
    c = corpus.load_corpus(p.source, p.split)
    table = corpus.sample_table(c, p.min_chars, p.max_chars, p.n_samples, p.seed)
    table.to_parquet(snakemake.output.samples, index=False)
    meta = {
        "source": c.source,
        "version": c.version,
        "n_texts": len(c.texts),
        "n_after_filter": len(corpus.filter_texts(c.texts, p.min_chars, p.max_chars)),
        "min_chars": p.min_chars,
        "max_chars": p.max_chars,
        "n_samples": p.n_samples,
        "seed": p.seed,
        **c.meta,
    }
    with open(snakemake.output.meta, "w") as fh:
        json.dump(meta, fh, indent=2)
    print(json.dumps(meta, indent=2))
