"""Rule findings: test the paper's headline findings on one model (docs/findings.md)."""
import json

import pandas as pd

from transformer_dynamics import findings as F
from transformer_dynamics.rulelog import rule_logging

with rule_logging(snakemake):
    p, i = snakemake.params, snakemake.input
    conds = list(p.conditions)
    load = lambda paths: {c: pd.read_parquet(x) for c, x in zip(conds, paths)}  # noqa: E731
    units, transitions, sublayers, rot = load(i.units), load(i.transitions), load(i.sublayers), load(i.rotations)
    th = {**F.DEFAULT_THRESHOLDS, **p.thresholds, "n_components": p.n_components}
    out = []
    out += F.correlation_finding(units, th, p.seed)
    out += F.magnitude_finding(transitions, sublayers, th, p.seed)
    out += F.mi_finding(units, th, p.seed)
    out += F.rotation_finding(rot, th)
    out += F.dimensionality_finding(pd.read_parquet(i.n_pcs), pd.read_parquet(i.means), pd.read_parquet(i.spectrum), th, p.seed)
    if i.get("teleport"):
        out += F.perturbation_finding(pd.read_parquet(i.teleport), th, p.recovery_steps)
    result = {"model": snakemake.wildcards.model, "thresholds": th, "findings": [f.to_dict() for f in out]}
    with open(snakemake.output.json, "w") as fh:
        json.dump(result, fh, indent=2)
    for f in out:
        print(f"{f.key}: {f.verdict} ({f.statistic} = {f.value:.3g})")
