"""Rule findings_table: one table of findings x models (markdown and CSV)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics.findings import cae_markdown, findings_markdown
from transformer_dynamics.views import findings_by_position_markdown

with rule_logging(snakemake):
    per_model = {}
    for m, path in zip(snakemake.params.models, snakemake.input.json):
        with open(path) as fh:
            res = json.load(fh)
        if "findings" in res:
            per_model[m] = res["findings"]
        if "findings_shuffled" in res:
            per_model[f"{m} (shuffled tokens)"] = res["findings_shuffled"]
    cae = {(m, c): json.load(open(snakemake.input.cae[k * len(snakemake.params.conditions) + j]))
           for k, m in enumerate(snakemake.params.models) for j, c in enumerate(snakemake.params.conditions)}
    header = ("# Which of the paper's findings hold\n\nOne column per model and condition (the shuffled-token "
              "condition is the paper's token-order control). Each cell: the verdict, the statistic, its 95 % "
              "bootstrap interval or p-value, the statistic under the null the row tests against and where the "
              "claim puts the observed value (above or below it), and notes; the rule column states when a "
              "finding holds, with this run's thresholds. A null that meets or beats the observed value is said "
              "in the cell and keeps the verdict from 'holds'. Every other control value is in each model's "
              "findings.json. Definitions: docs/findings.md and docs/methods.md.\n\n")
    with open(snakemake.output.md, "w") as fh:
        fh.write(header + findings_markdown(per_model))
        fh.write("\n## Fit diagnostics (compressing autoencoder, Fig 3)\n\n" + cae_markdown(cae))
        if snakemake.input.get("positions"):
            fh.write("\n## By token position\n\nThe same findings with tokens as observations, per position bucket "
                     "(extraction.positions; docs/positions.md). 'last' = each text's last token (the paper's "
                     "observations); buckets 1 ... 32+ exclude last tokens; 'all' pools every stored token. F5c "
                     "(teleports) is tested at the last token only.\n\n")
            for m, path in zip(snakemake.params.models, snakemake.input.positions):
                fh.write(findings_by_position_markdown(m, pd.read_csv(path)))
    rows = [{"model": m, **{k: v for k, v in f.items() if k != "control"}, **{f"control.{k}": v for k, v in f["control"].items()}}
            for m, fs in per_model.items() for f in fs]
    rows += [{"model": m if c == "original" else f"{m} ({c} tokens)", "key": "CAE", "claim": "the CAE fit is usable",
              "verdict": "usable" if d["usable"] else "not usable", "note": d["status"]} for (m, c), d in cae.items()]
    pd.DataFrame(rows).to_csv(snakemake.output.csv, index=False)
