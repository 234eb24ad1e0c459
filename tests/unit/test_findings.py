"""Findings: verdicts on synthetic tables whose answers are known."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from transformer_dynamics import findings as F
from transformer_dynamics.sublayers import sublayer_labels
from transformer_dynamics.unit_stats import transition_table

SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"
# the thresholds' defaults live in the schema only
DEFAULTS = {k: v["default"] for k, v in yaml.safe_load(SCHEMA.read_text())["properties"]["findings"]["properties"].items()}
TH = {**DEFAULTS, "n_boot": 200}


def units_table(r_fn, mi_fn, layers=8, units=40, seed=0):
    rng = np.random.default_rng(seed)
    tr = transition_table(sublayer_labels(layers))
    rows = []
    for _, t in tr.iterrows():
        for u in range(units):
            rows.append({"unit": u, "transition": t.transition, "type": t.type, "depth": t.depth,
                         "pearson_r": r_fn(t) + 0.01 * rng.normal(), "mi_nats": mi_fn(t) + 0.01 * rng.normal()})
    return pd.DataFrame(rows)


def test_correlation_and_mi_verdicts():
    rising = units_table(lambda t: 0.85 + 0.1 * t.depth + (0.03 if t.type == "within" else 0), lambda t: 1 - t.depth)
    fs = {f.key: f for f in F.correlation_finding(rising, TH) + F.mi_finding(rising, TH)}
    assert fs["F1a"].verdict == F.HOLDS and fs["F1b"].verdict == F.HOLDS and fs["F1c"].verdict == F.HOLDS
    assert fs["F1b"].ci_low > 0 and fs["F3"].verdict == F.HOLDS
    falling = units_table(lambda t: 0.7 - 0.3 * t.depth - (0.05 if t.type == "within" else 0), lambda t: t.depth)
    fs = {f.key: f for f in F.correlation_finding(falling, TH) + F.mi_finding(falling, TH)}
    assert fs["F1a"].verdict == F.FAILS and fs["F1b"].verdict == F.FAILS and fs["F1c"].verdict == F.FAILS
    assert fs["F3"].verdict == F.FAILS
    flat = units_table(lambda t: 0.9, lambda t: 0.5).assign(pearson_r=0.9)  # no trend at all
    with warnings.catch_warnings():
        warnings.simplefilter("error", stats.ConstantInputWarning)  # constant input: NaN, no warning leaks
        assert F.correlation_finding(flat, TH)[1].verdict == F.INCONCLUSIVE


def test_rotation_verdicts_against_nulls():
    rng = np.random.default_rng(0)
    n = 100
    rot = pd.DataFrame({"unit": range(n), "abs_R": 10 + rng.normal(size=n), "null_abs_mean": 2.5, "null": "points",
                        "p_value": 0.001, "q_value": 0.001, "incr_null_abs_mean": 10 + rng.normal(size=n),
                        "incr_q_value": 0.5})
    f = {x.key: x for x in F.rotation_finding(rot, TH)}
    assert f["F4a"].verdict == F.HOLDS
    assert f["F4b"].verdict != F.HOLDS  # no better than the increment surrogate


def test_dimensionality_and_perturbation_verdicts():
    S = 12
    n_pcs = pd.DataFrame({"sublayer_index": range(S), "sublayer": sublayer_labels(S // 2), "n_pcs_90": np.linspace(60, 5, S)})
    means = pd.DataFrame({"unit": np.tile(range(50), S), "sublayer_index": np.repeat(range(S), 50), "sd": 1.0})
    spectrum = pd.DataFrame({"component": range(1, 51), "cumulative": np.minimum(1, np.arange(1, 51) / 4)})
    f = {x.key: x for x in F.dimensionality_finding(n_pcs, means, spectrum, TH)}
    assert f["F5a"].verdict == F.HOLDS and f["F5a"].control["column_permuted_null_median_pcs90"] == 45
    assert f["F5b"].verdict == F.HOLDS
    rows = []
    for layer, ratio in ((0, 1.3), (5, 0.5), (10, 0.6), (15, 1.2)):
        for k in range(13):
            rows.append({"layer": layer, "steps_after": k, "mse_pc": 100 * ratio ** (k / 12)})
    p = F.perturbation_finding(pd.DataFrame(rows), TH)[0]
    assert p.verdict == F.HOLDS and abs(p.value - (1.25 - 0.55)) < 1e-9
    md = F.findings_markdown({"a": [x.to_dict() for x in f.values()], "b": [p.to_dict()]})
    assert "| F5a" in md and "n/a" in md and "**holds**" in md


def test_table_shows_nulls_bounds_undefined_values_and_keeps_row_order():
    S, rng = 12, np.random.default_rng(0)
    rot = pd.DataFrame({"unit": range(50), "abs_R": 10 + rng.normal(size=50), "null_abs_mean": 2.53, "null": "points",
                        "p_value": 0.001, "q_value": 0.001})
    means = pd.DataFrame({"unit": np.tile(range(50), S), "sublayer_index": np.repeat(range(S), 50), "sd": 1.0})
    # random-init-like: 90 % of the pooled variance not reached within 20 PCs, one sublayer reaches it
    k = np.full(S, np.nan)
    k[3] = 18
    n_pcs = pd.DataFrame({"sublayer_index": range(S), "sublayer": sublayer_labels(S // 2), "n_pcs_90": k})
    spectrum = pd.DataFrame({"component": range(1, 21), "cumulative": np.arange(1, 21) / 40})
    f = {x.key: x for x in F.dimensionality_finding(n_pcs, means, spectrum, TH) + F.rotation_finding(rot, TH)}
    assert f["F5a"].bound == ">" and f["F5a"].value == pytest.approx(21 / 50) and f["F5a"].verdict == F.FAILS
    assert np.isnan(f["F5b"].value) and f["F5b"].verdict == F.INCONCLUSIVE and f["F5b"].ci_low is None
    tr = pd.DataFrame({"depth": np.linspace(0, 1, 11), "velocity_mean": np.arange(1, 12.0), "cosine_mean": np.arange(11.0)})
    sub = pd.DataFrame({"depth": np.linspace(0, 1, 12), "norm_mean": np.exp(np.linspace(0, 1, 12) ** 2)})
    f2 = F.magnitude_finding(tr, sub, TH)
    assert [x.key for x in f2] == ["F2a", "F2b", "F2c", "F2d"]
    md = F.findings_markdown({"m": [x.to_dict() for x in f2[::-1] + list(f.values())]})
    rows = [line.split(":")[0].strip("| ") for line in md.splitlines()[2:]]
    assert rows == ["F2a", "F2b", "F2c", "F2d", "F4a", "F5a", "F5b"]
    line = {r: l for r, l in zip(rows, md.splitlines()[2:])}
    assert "; null: 2.53 (point-shuffle null) (claim: above it)" in line["F4a"] and "**holds**: 10" in line["F4a"]
    assert "**does not hold**: >0.42; null:" in line["F5a"] and "90 % not reached within the 20 computed PCs" in line["F5a"]
    assert ("**inconclusive**: n/a (undefined because only 1 of 12 sublayers reach 90 % within 20 PCs)"
            in line["F5b"])
    assert "[" not in line["F5b"].split(" | ")[-1]


def test_each_condition_is_tested_as_primary_with_the_other_as_its_control():
    rising = units_table(lambda t: 0.85 + 0.1 * t.depth + (0.03 if t.type == "within" else 0), lambda t: 1 - t.depth)
    falling = units_table(lambda t: 0.7 - 0.3 * t.depth - (0.05 if t.type == "within" else 0), lambda t: t.depth)
    S, rng = 12, np.random.default_rng(0)
    rot = pd.DataFrame({"unit": range(50), "abs_R": 10 + rng.normal(size=50), "null_abs_mean": 2.5, "null": "points",
                        "p_value": 0.001, "q_value": 0.001})
    common = {
        "transitions": pd.DataFrame({"depth": np.linspace(0, 1, 11), "velocity_mean": np.arange(1, 12.0),
                                     "cosine_mean": np.arange(11.0)}),
        "sublayers": pd.DataFrame({"depth": np.linspace(0, 1, 12), "norm_mean": np.exp(np.linspace(0, 1, 12))}),
        "n_pcs": pd.DataFrame({"sublayer_index": range(S), "sublayer": sublayer_labels(S // 2),
                               "n_pcs_90": np.linspace(60, 5, S)}),
        "means": pd.DataFrame({"unit": np.tile(range(50), S), "sublayer_index": np.repeat(range(S), 50), "sd": 1.0}),
        "spectrum": pd.DataFrame({"component": range(1, 51), "cumulative": np.minimum(1, np.arange(1, 51) / 4)}),
    }
    tables = {"original": {**common, "units": rising, "rotations": rot},
              "shuffled": {**common, "units": falling, "rotations": rot.assign(abs_R=3.0)}}
    out = F.model_findings(tables, TH)
    assert list(out) == ["original", "shuffled"]
    orig, shuf = ({f.key: f for f in out[c]} for c in out)
    # the tested condition's own numbers, not the original's, when the shuffled one is tested
    assert orig["F1a"].value == pytest.approx(rising["pearson_r"].median())
    assert shuf["F1a"].value == pytest.approx(falling["pearson_r"].median()) and shuf["F1a"].verdict == F.FAILS
    # the control is the other condition, named as such
    assert orig["F1a"].control["shuffled_median_r"] == pytest.approx(falling["pearson_r"].median())
    assert shuf["F1a"].control["original_median_r"] == pytest.approx(rising["pearson_r"].median())
    assert shuf["F4a"].value == 3.0 and orig["F4a"].control["shuffled_tokens_mean_abs_R"] == 3.0
    assert "F5c" not in orig  # no teleport table, no perturbation finding
    alone = F.model_findings({"shuffled": tables["shuffled"]}, TH)["shuffled"]
    assert not any(k.startswith("original") for f in alone for k in f.control)
    assert F.findings_key("original") == "findings" and F.findings_key("shuffled") == "findings_shuffled"


DOCS = Path(__file__).resolve().parents[2] / "docs/findings.md"


def test_docs_rules_table_is_the_codes_rules():
    """docs/findings.md's rules table is RULES, the definitions the verdicts are computed from."""
    text = DOCS.read_text()
    start, end = "<!-- rules table: generated by findings.rules_markdown() -->\n", "<!-- end of rules table -->"
    assert start in text and end in text, "docs/findings.md lost its generated rules table"
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == F.rules_markdown(), (
        "docs/findings.md's rules differ from findings.RULES: paste the output of "
        "python -c 'from transformer_dynamics import findings; print(findings.rules_markdown(), end=\"\")'")
    # and each documented rule names only quantities its finding reports, or thresholds
    for r in F.RULES.values():
        assert f"`{r.holds}`" in table and f"`{r.fails}`" in table
    # the old F4b text (a stricter rule in the docs than in the code) cannot come back unnoticed
    assert F.RULES["F4b"].holds.count("fraction_significant > 0.5") == 1


def synthetic_model_tables(abs_R=10.45, incr=9.5, act=13.6, incr_q=0.5, act_q=1.0, seed=0):
    rising = units_table(lambda t: 0.85 + 0.1 * t.depth + (0.03 if t.type == "within" else 0), lambda t: 1 - t.depth)
    S, n, rng = 12, 200, np.random.default_rng(seed)
    rot = pd.DataFrame({"unit": range(n), "R": -(abs_R + rng.normal(size=n)), "null_abs_mean": 2.5, "null": "points",
                        "p_value": 0.001, "q_value": 0.001, "incr_null_abs_mean": incr + 0.3 * rng.normal(size=n),
                        "incr_p_value": incr_q, "incr_q_value": incr_q, "act_null_abs_mean": act + 0.3 * rng.normal(size=n),
                        "act_p_value": act_q, "act_q_value": act_q})
    rot["abs_R"] = rot["R"].abs()
    return {
        "units": rising, "rotations": rot,
        "transitions": pd.DataFrame({"depth": np.linspace(0, 1, 11), "velocity_mean": np.arange(1, 12.0),
                                     "cosine_mean": np.arange(11.0)}),
        "sublayers": pd.DataFrame({"depth": np.linspace(0, 1, 12), "norm_mean": np.exp(np.linspace(0, 1, 12) ** 3)}),
        "n_pcs": pd.DataFrame({"sublayer_index": range(S), "sublayer": sublayer_labels(S // 2),
                               "n_pcs_90": np.linspace(60, 5, S)}),
        "means": pd.DataFrame({"unit": np.tile(range(50), S), "sublayer_index": np.repeat(range(S), 50), "sd": 1.0}),
        "spectrum": pd.DataFrame({"component": range(1, 51), "cumulative": np.minimum(1, np.arange(1, 51) / 4)}),
    }


def test_every_verdict_is_its_rule_on_the_reported_inputs():
    fs = F.condition_findings(synthetic_model_tables(), None, None, TH)
    assert [f.key for f in fs] == [k for k in F.RULES if k != "F5c"]
    for f in fs:
        r = F.RULES[f.key]
        assert F.rule_names(r.holds) | F.rule_names(r.fails) <= set(f.inputs) | set(TH), f.key
        assert f.verdict == F.judge(f.key, f.inputs, TH), f.key
        assert f.rule == F.rule_text(f.key, TH) and f.claim == r.claim
    # thresholds are printed with their values
    assert F.rule_text("F1a", TH) == ("holds if median_r > min_median_r (0.8); does not hold if "
                                      "median_r <= min_median_r (0.8); otherwise inconclusive")


def test_f4b_needs_most_units_significant_as_its_rule_says():
    """The quick run's case: median excess > 0 and Wilcoxon p ~ 1e-37, 0 % of units significant after BH."""
    f = {x.key: x for x in F.rotation_finding(synthetic_model_tables(incr_q=0.5)["rotations"], TH)}
    assert f["F4b"].value > 0 and f["F4b"].p_value < 1e-10 and f["F4b"].control["fraction_units_q<alpha"] == 0
    assert f["F4b"].verdict == F.INCONCLUSIVE  # was "holds" before the rule was enforced
    assert "0 % of units individually significant after BH (the rule needs > 50 %)" in f["F4b"].note
    f = {x.key: x for x in F.rotation_finding(synthetic_model_tables(incr_q=0.001)["rotations"], TH)}
    assert f["F4b"].verdict == F.HOLDS


def test_a_null_that_beats_the_observed_value_is_in_the_table_and_in_words():
    tables = synthetic_model_tables(abs_R=10.45, act=13.6)
    f = {x.key: x for x in F.rotation_finding(tables["rotations"], TH)}
    assert f["F4a"].verdict == F.HOLDS
    assert f["F4c"].verdict == F.FAILS and f["F4c"].null_value == pytest.approx(13.6, abs=0.1)
    md = F.findings_markdown({"m": [x.to_dict() for x in f.values()]})
    row = next(line for line in md.splitlines() if line.startswith("| F4c"))
    assert "activation-shuffle null" in row and "meets or beats the observed" in row and "**does not hold**" in row
    assert "fraction_significant (0.5)" not in row and "p < alpha (0.05)" in row  # the rule, thresholds filled in
    # F5b: a column-permuted null whose rho is as negative as the observed keeps the verdict from "holds"
    t = synthetic_model_tables()
    f5 = {x.key: x for x in F.dimensionality_finding(t["n_pcs"], t["means"], t["spectrum"], TH)}
    assert f5["F5b"].verdict == F.HOLDS and f5["F5b"].inputs["rho"] < 0
    assert F.judge("F5b", {**f5["F5b"].inputs, "null_value": f5["F5b"].inputs["rho"]}, TH) == F.INCONCLUSIVE
    assert F.judge("F5a", {**f5["F5a"].inputs, "null_value": f5["F5a"].inputs["ratio"]}, TH) == F.INCONCLUSIVE


def test_f2c_compares_slopes_not_their_ratio():
    d = np.linspace(0, 1, 12)
    falling_then_rising = np.exp(np.where(d < 2 / 3, -d, -2 / 3 + 3 * (d - 2 / 3)))
    tr = pd.DataFrame({"depth": np.linspace(0, 1, 11), "velocity_mean": np.arange(1, 12.0), "cosine_mean": np.arange(11.0)})
    f = {x.key: x for x in F.magnitude_finding(tr, pd.DataFrame({"depth": d, "norm_mean": falling_then_rising}), TH)}
    assert f["F2c"].value < 0 and f["F2c"].verdict == F.HOLDS  # the ratio is negative, the last third is steeper
