"""Rule findings: test the paper's headline findings on one model (docs/findings.md)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics import findings

with rule_logging(snakemake):
    p, i = snakemake.params, snakemake.input
    names = [n for n in ("units", "transitions", "sublayers", "rotations", "n_pcs", "means", "spectrum", "teleport") if i.get(n)]
    tables = {c: {n: pd.read_parquet(i[n][k]) for n in names} for k, c in enumerate(p.conditions)}
    th = {**p.thresholds, "n_components": p.n_components}
    per_condition = findings.model_findings(tables, th, p.seed)
    result = {"model": snakemake.wildcards.model, "thresholds": th}
    for c, found in per_condition.items():
        result[findings.findings_key(c)] = [f.to_dict() for f in found]
    with open(snakemake.output.json, "w") as fh:
        json.dump(result, fh, indent=2)
    for f in per_condition[p.conditions[0]]:
        print(f"{f.key}: {f.verdict} ({f.statistic} = {f.value})")
