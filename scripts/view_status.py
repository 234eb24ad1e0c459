"""Rule view_status: whether a position bucket can be analysed (tokens, not one repeated vector)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

from transformer_dynamics.views import view_status

with rule_logging(snakemake):
    p = snakemake.params
    status = view_status(snakemake.input.store, min_tokens=p.min_tokens, **p.view)
    with open(snakemake.output.status, "w") as fh:
        json.dump(status, fh, indent=2)
    print(json.dumps(status))
