"""Rule findings: test the paper's headline findings on one model (docs/findings.md)."""
from transformer_dynamics.rulelog import pin_threads, rule_logging

pin_threads(snakemake)  # first: numpy/torch read the thread settings when they load

import json

import pandas as pd

from transformer_dynamics import findings as F

with rule_logging(snakemake):
    p, i = snakemake.params, snakemake.input
    conds = list(p.conditions)
    load = lambda paths: {c: pd.read_parquet(x) for c, x in zip(conds, paths)}  # noqa: E731
    units, transitions, sublayers, rot = load(i.units), load(i.transitions), load(i.sublayers), load(i.rotations)
    th = {**F.DEFAULT_THRESHOLDS, **p.thresholds, "n_components": p.n_components}
    pca_tables = {k: load(i[k]) for k in ("n_pcs", "means", "spectrum")}
    teleport = load(i.teleport) if i.get("teleport") else {}

    def test_condition(c):
        """All findings on condition c; the other condition, if any, is reported as its control."""
        other = [x for x in conds if x != c]
        as_primary = lambda t: {"original": t[c], **({"shuffled": t[other[0]]} if other else {})}  # noqa: E731
        out = []
        out += F.correlation_finding(as_primary(units), th, p.seed)
        out += F.magnitude_finding(as_primary(transitions), as_primary(sublayers), th, p.seed)
        out += F.mi_finding(as_primary(units), th, p.seed)
        out += F.rotation_finding(as_primary(rot), th)
        out += F.dimensionality_finding(pca_tables["n_pcs"][c], pca_tables["means"][c], pca_tables["spectrum"][c], th, p.seed)
        if teleport:
            out += F.perturbation_finding(teleport[c], th, p.recovery_steps)
        return out

    result = {"model": snakemake.wildcards.model, "thresholds": th}
    for c in conds:
        result["findings" if c == "original" else f"findings_{c}"] = [f.to_dict() for f in test_condition(c)]
    out = test_condition(conds[0])
    with open(snakemake.output.json, "w") as fh:
        json.dump(result, fh, indent=2)
    for f in out:
        print(f"{f.key}: {f.verdict} ({f.statistic} = {f.value})")
