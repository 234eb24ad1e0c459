"""Rule verify_store: re-check every chunk of a finished store (checksums, presence, finite)."""
import json

from transformer_dynamics import store
from transformer_dynamics.rulelog import rule_logging

with rule_logging(snakemake):
    counts = store.verify(snakemake.input.store)
    with open(snakemake.output.report, "w") as fh:
        json.dump({"store": snakemake.input.store, "status": "ok", "chunks": counts}, fh, indent=2)
    print(f"{snakemake.input.store}: {sum(counts.values())} chunks verified")
