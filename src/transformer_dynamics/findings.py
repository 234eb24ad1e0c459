"""The paper's headline findings as tests with statistics, nulls and verdicts (§1, §3).

Each function reads the analysis tables of one model and condition, the *primary* (the
condition tested), and, where a condition contrast is the control, those of the *control*
condition (the other one, if the run has it), and returns :class:`Finding` s: the statistic,
its value, an interval or p-value where one applies, the value under the paper's control and
under a stronger null, and a verdict ``holds`` / ``does not hold`` / ``inconclusive``.
Control values computed on the other condition are keyed by its name (e.g.
``shuffled_median_r`` when the original condition is tested). :func:`model_findings` tests
every condition of a model.

One source of truth: every finding's claim, statistic, verdict rule and null are written
once, in :data:`RULES`. The verdict is *computed from* the rule's text (:func:`judge`
evaluates its ``holds`` and ``fails`` expressions over the quantities the finding reports
in ``inputs`` and the thresholds of config ``findings:``), the rules table of
docs/findings.md is generated from it (:func:`rules_markdown`; a test compares them) and
results/findings.md prints each rule with the thresholds filled in (:func:`rule_text`).
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .seeds import stream

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

Control = tuple[str, pd.DataFrame]
"""The control condition's table of the same kind: ``(condition name, table)``."""


@dataclass(frozen=True)
class Rule:
    """A finding's definition: what it claims, the statistic, and when it holds.

    ``holds`` and ``fails`` are Python expressions over the quantities the finding reports
    (``Finding.inputs``) and the thresholds (config ``findings:``); a NaN makes every
    comparison false. Neither true: ``inconclusive``.
    """

    key: str
    claim: str
    statistic: str
    holds: str
    fails: str
    nulls: str = ""  # the nulls/controls reported beside it
    why: str = ""  # why the rule is what it is, where that is not obvious


RULES: dict[str, Rule] = {r.key: r for r in (
    Rule("F1a", "successive-sublayer correlations are high",
         "median Pearson r over all units x consecutive transitions (`median_r`)",
         "median_r > min_median_r", "median_r <= min_median_r",
         "shuffled-token condition (its own column); fraction of transitions whose median exceeds the threshold"),
    Rule("F1b", "correlations rise with depth",
         "Spearman `rho` between normalised depth and the per-transition median r; bootstrap CI over transitions",
         "rho > 0 and p < alpha", "rho < 0 and p < alpha", "rho in the shuffled-token condition"),
    Rule("F1c", "within-layer transitions correlate more than cross-layer ones",
         "per unit, mean r over within-layer minus mean r over cross-layer transitions; median over units "
         "(`median_diff`); Wilcoxon signed-rank over units (`p`)",
         "median_diff > 0 and p < alpha", "median_diff < 0 and p < alpha"),
    Rule("F2a", "activation magnitude grows with depth", "Spearman `rho`(depth, mean residual norm per sublayer)",
         "rho > 0 and p < alpha", "rho < 0 and p < alpha"),
    Rule("F2b", "velocity grows with depth", "Spearman `rho`(depth, mean velocity per transition)",
         "rho > 0 and p < alpha", "rho < 0 and p < alpha"),
    Rule("F2c", "growth is steepest in the last third",
         "slope of log ||h|| vs depth in the last third (`slope_last`) divided by the slope in the first two "
         "thirds (`slope_rest`)",
         "slope_last > slope_rest", "slope_last <= slope_rest", "the two slopes",
         "the rule compares the slopes, not their ratio with 1: the ratio flips when the early slope is negative"),
    Rule("F2d", "cosine similarity rises with depth", "Spearman `rho`(depth, mean cosine similarity per transition)",
         "rho > 0 and p < alpha", "rho < 0 and p < alpha"),
    Rule("F3", "MI drops sharply in early layers",
         "Spearman `rho`(depth, mean MI per transition) over the first third of the transitions",
         "rho < 0 and p < alpha", "rho > 0 and p < alpha",
         "shuffled-token rho; early within vs cross mean MI"),
    Rule("F4a", "units rotate more than the layer-shuffle control (paper's null)",
         "mean |R| over units (`mean_abs_R`) vs the mean |R| of the configured layer-shuffle null (`null_value`; "
         "default `points`, docs/methods.md null (b)); `fraction_significant`: units with BH q < alpha (two-sided per-unit test)",
         "mean_abs_R > null_value and fraction_significant > 0.5",
         "mean_abs_R <= null_value and fraction_significant > 0.5",
         "the null's mean |R|; shuffled-token mean |R|"),
    Rule("F4b", "units rotate more than increment-shuffled surrogates (stronger null)",
         "median over units of |R| minus the mean |R| of the unit's increment-shuffled, re-integrated surrogates "
         "(`median_excess`); Wilcoxon signed-rank over units (`p`); `fraction_significant`: units with BH q < alpha "
         "(one-sided per-unit test: does the unit rotate more than its surrogates?)",
         "median_excess > 0 and p < alpha and fraction_significant > 0.5",
         "median_excess < 0 and p < alpha",
         "the surrogates' mean |R| (a random walk with the unit's own increments)",
         "the claim is about units, so, as in F4a, most units must beat their own surrogates: the Wilcoxon test "
         "treats units as independent observations, but units share the same samples and are correlated, so its "
         "p-value overstates the evidence (p = 1e-37 with 0 % of units individually significant on the quick run); "
         "each unit's surrogate test is valid on its own and BH holds under the positive dependence units have. A "
         "significant positive median with few significant units is a population-level excess too small to show in "
         "any unit: inconclusive, with both numbers shown"),
    Rule("F4c", "units rotate more than activation-shuffled sequences (null (a) of docs/methods.md)",
         "as F4b with the activation-shuffle null (permute the unit's activations over sublayers, recompute the "
         "gradient and R) in place of the increment surrogates",
         "median_excess > 0 and p < alpha and fraction_significant > 0.5",
         "median_excess < 0 and p < alpha",
         "the activation-shuffle null's mean |R|",
         "docs/methods.md's null (a): white noise rotates more than most smooth signals, so a unit can fail this one "
         "while beating the paper's point shuffle; same rule as F4b"),
    Rule("F5a", "trajectories are low-dimensional",
         "PCs for 90 % of the pooled variance divided by D (`ratio`); `lower_bound` = 1 when 90 % is not reached "
         "within the computed PCs (the ratio is then a lower bound)",
         "ratio < max_pc_fraction and ratio < null_value and lower_bound == 0", "ratio >= max_pc_fraction",
         "column-permuted null (every unit shuffled over samples: diagonal covariance, so PCs = units): its median "
         "PCs for 90 % per sublayer / D (`null_value`)",
         "a ratio that the column-permuted null reaches too is no evidence of low dimensionality; a lower bound "
         "(90 % not reached within the computed PCs) below the threshold is inconclusive"),
    Rule("F5b", "later layers need fewer PCs",
         "Spearman `rho`(depth, PCs for 90 % of each sublayer's variance; \"not reached in 100\" counts as 101); "
         "undefined when fewer than half the sublayers (or 3) reach 90 %",
         "rho < 0 and p < alpha and rho < null_value", "rho > 0 and p < alpha",
         "the column-permuted null's rho (`null_value`)",
         "a null that falls with depth as steeply (units whose variances alone shrink the PC count) leaves the "
         "claim undistinguished from it: inconclusive"),
    Rule("F5c", "mid-layer teleports return toward the control better than first/last-layer ones",
         "per perturbed layer, ratio of the mean squared distance to the control (PC plane) `recovery_steps` "
         "sublayers after teleporting to that at teleport; mean of first and last layers minus mean of the middle "
         "ones (`gain`); undefined with fewer than 3 layers or a zero distance at teleport",
         "gain > min_recovery_gain", "gain < 0",
         "noise and swap perturbations in figures/perturbation_kinds"),
)}


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_KEYWORDS = {"and", "or", "not"}


def rule_names(expr: str) -> set[str]:
    """The quantity and threshold names an expression reads."""
    return {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}


def judge(key: str, inputs: dict[str, Any], th: dict[str, Any]) -> str:
    """The verdict of ``RULES[key]`` on the finding's ``inputs`` and thresholds ``th``.

    Every name of the rule must be given (KeyError otherwise); None and NaN make each
    comparison false, so an undefined statistic is ``inconclusive``.
    """
    rule = RULES[key]
    env: dict[str, Any] = {}
    for name in rule_names(rule.holds) | rule_names(rule.fails):
        v = inputs[name] if name in inputs else th[name]
        env[name] = float("nan") if v is None else v
    ok = bool(eval(compile(rule.holds, key, "eval"), {"__builtins__": {}}, env))  # noqa: S307 (module constants)
    bad = bool(eval(compile(rule.fails, key, "eval"), {"__builtins__": {}}, env))  # noqa: S307
    if ok and bad:
        raise ValueError(f"{key}: the rule's holds and fails conditions are both true on {env}")
    return HOLDS if ok else FAILS if bad else INCONCLUSIVE


def _fill(expr: str, th: dict[str, Any]) -> str:
    """``expr`` with each threshold's name followed by its value, e.g. ``p < alpha (0.05)``."""
    return _NAME.sub(lambda m: f"{m.group(0)} ({th[m.group(0)]:g})"
                     if m.group(0) in th and m.group(0) not in _KEYWORDS and isinstance(th[m.group(0)], (int, float))
                     else m.group(0), expr)


def rule_text(key: str, th: dict[str, Any] | None = None) -> str:
    """The verdict rule in words: ``holds if ...; does not hold if ...; else inconclusive``."""
    r = RULES[key]
    f = (lambda e: _fill(e, th)) if th is not None else (lambda e: e)
    return f"holds if {f(r.holds)}; does not hold if {f(r.fails)}; otherwise inconclusive"


def rules_markdown() -> str:
    """The rules table of docs/findings.md, generated from :data:`RULES` (a test compares them)."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| key | claim (paper) | statistic | verdict rule | nulls / controls |", "| --- | --- | --- | --- | --- |"]
    for r in RULES.values():
        rule = f"holds if `{r.holds}`; does not hold if `{r.fails}`; otherwise inconclusive"
        if r.why:
            rule += f". Why: {r.why}"
        lines.append(f"| {r.key} | {esc(r.claim)} | {esc(r.statistic)} | {esc(rule)} | {esc(r.nulls)} |")
    return "\n".join(lines) + "\n"


@dataclass
class Finding:
    """One finding tested on one model.

    ``inputs``: the quantities its rule reads (:data:`RULES`); ``verdict`` is
    :func:`judge` of them. ``null_value``/``null_label`` the statistic under the null it is
    compared with in its row, ``null_side`` where the claim puts the observed value
    (``above`` or ``below`` the null).
    """

    key: str
    claim: str
    statistic: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    control: dict[str, float] = field(default_factory=dict)
    verdict: str = INCONCLUSIVE
    note: str = ""
    null_value: float | None = None  # the statistic under the null it is compared with, shown beside it
    null_label: str = ""
    bound: str = ""  # ">" when ``value`` is only a lower bound (e.g. 90 % not reached within the PCs computed)
    null_side: str = ""  # "above" / "below": where the claim puts the observed value relative to the null
    rule: str = ""  # the verdict rule with the thresholds filled in (rule_text)
    inputs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    return v


def _finding(key: str, value: float, th: dict[str, Any], inputs: dict[str, Any], **kw: Any) -> Finding:
    """A :class:`Finding` whose claim, statistic text and verdict come from ``RULES[key]``."""
    r = RULES[key]
    kw.setdefault("claim", r.claim)
    kw.setdefault("statistic", re.sub(r" \(`\w+`\)|`", "", re.split(r";(?![^(]*\))", r.statistic)[0]))
    inputs = {k: (float(v) if v is not None else float("nan")) for k, v in inputs.items()}
    return Finding(key=key, value=float(value), verdict=judge(key, inputs, th), rule=rule_text(key, th),
                   inputs=inputs, **kw)


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman rho and p-value; NaN (no warning) when either input is constant."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho, p = stats.spearmanr(x, y)
    return float(rho), float(p)


def _spearman_boot(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float, float]:
    """Spearman rho, bootstrap 95 % CI over points, and its p-value."""
    rho, p = _spearman(x, y)
    rng = stream("findings.bootstrap", seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(_spearman(x[i], y[i])[0])
    lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return float(rho), float(lo), float(hi), float(p)


def correlation_finding(units: pd.DataFrame, th: dict[str, Any], seed: int = 0,
                        control: Control | None = None) -> list[Finding]:
    """F1: successive-sublayer correlations are high (> 0.8), rise with depth, within > cross.

    ``units``: the primary condition's unit table; ``control``: the other condition's, by name.
    """
    u = units
    med = u.groupby("transition")["pearson_r"].median()
    depth = u.groupby("transition")["depth"].first()
    rho, lo, hi, p = _spearman_boot(depth.to_numpy(), med.to_numpy(), th["n_boot"], seed)
    ctrl = {}
    if control is not None:
        name, cu = control
        ms = cu.groupby("transition")["pearson_r"].median()
        ctrl = {f"{name}_median_r": float(cu["pearson_r"].median()),
                f"{name}_depth_rho": _spearman(depth.to_numpy(), ms.to_numpy())[0]}
    high = float(u["pearson_r"].median())
    frac = float((med > th["min_median_r"]).mean())
    out = [
        _finding("F1a", high, th, {"median_r": high}, control={**ctrl, "fraction_transitions_above": frac},
                 note=f"{100 * frac:.0f} % of transitions have a median r above {th['min_median_r']:g}"),
        _finding("F1b", rho, th, {"rho": rho, "p": p}, ci_low=lo, ci_high=hi, p_value=p, control=ctrl),
    ]
    per_unit = u.pivot_table(index="unit", columns="type", values="pearson_r", aggfunc="mean").dropna()
    diff = per_unit["within"] - per_unit["cross"]
    w = stats.wilcoxon(diff) if len(diff) > 10 and np.any(diff != 0) else None
    pw = float(w.pvalue) if w is not None else float("nan")
    out.append(_finding("F1c", float(diff.median()), th, {"median_diff": float(diff.median()), "p": pw}, p_value=pw))
    return out


def magnitude_finding(transitions: pd.DataFrame, sublayers: pd.DataFrame, th: dict[str, Any],
                      seed: int = 0) -> list[Finding]:
    """F2: magnitude and velocity grow with depth, steepest in the last third; cosine rises."""
    sub, tr = sublayers, transitions
    out = []
    for key, x, y in (
        ("F2a", sub["depth"].to_numpy(), sub["norm_mean"].to_numpy()),
        ("F2b", tr["depth"].to_numpy(), tr["velocity_mean"].to_numpy()),
        ("F2d", tr["depth"].to_numpy(), tr["cosine_mean"].to_numpy()),
    ):
        rho, lo, hi, p = _spearman_boot(x, y, th["n_boot"], seed)
        out.append(_finding(key, rho, th, {"rho": rho, "p": p}, ci_low=lo, ci_high=hi, p_value=p))
    # steepest growth in the last third: slope of log-norm per unit depth, last third vs the rest
    d, logn = sub["depth"].to_numpy(), np.log(sub["norm_mean"].to_numpy())
    last = d >= 2 / 3
    s_last = float(np.polyfit(d[last], logn[last], 1)[0])
    s_rest = float(np.polyfit(d[~last], logn[~last], 1)[0])
    out.append(_finding("F2c", s_last / s_rest if s_rest != 0 else float("nan"), th,
                        {"slope_last": s_last, "slope_rest": s_rest},
                        control={"slope_last_third": s_last, "slope_first_two_thirds": s_rest},
                        note=f"slopes of log ||h|| per unit depth: {s_last:.3g} (last third) vs {s_rest:.3g}"))
    return sorted(out, key=lambda f: _key_order(f.key))


def mi_finding(units: pd.DataFrame, th: dict[str, Any], seed: int = 0, control: Control | None = None) -> list[Finding]:
    """F3: MI drops sharply in the early layers (first third of the transitions)."""
    u = units
    mi = u.groupby("transition").agg(mi=("mi_nats", "mean"), depth=("depth", "first"), type=("type", "first"))
    early = mi[mi["depth"] <= 1 / 3]
    rho, lo, hi, p = _spearman_boot(early["depth"].to_numpy(), early["mi"].to_numpy(), th["n_boot"], seed)
    ctrl = {}
    if control is not None:
        name, cu = control
        ms = cu.groupby("transition").agg(mi=("mi_nats", "mean"), depth=("depth", "first"))
        e2 = ms[ms["depth"] <= 1 / 3]
        ctrl[f"{name}_early_rho"] = _spearman(e2["depth"], e2["mi"])[0]
    ctrl["early_mean_mi_cross"] = float(early.loc[early["type"] == "cross", "mi"].mean())
    ctrl["early_mean_mi_within"] = float(early.loc[early["type"] == "within", "mi"].mean())
    return [_finding("F3", rho, th, {"rho": rho, "p": p}, ci_low=lo, ci_high=hi, p_value=p, control=ctrl)]


NULL_NAMES = {"points": "point-shuffle null", "activations": "activation-shuffle null",
              "increments": "increment-shuffle null"}


def _versus(observed: float, null: float, side: str, label: str) -> str:
    """The observed value against a null, in words."""
    if not (np.isfinite(observed) and np.isfinite(null)):
        return ""
    beats = observed > null if side == "above" else observed < null
    if beats:
        return f"observed {observed:.3g} is {side} the {label} ({null:.3g}), as claimed"
    return (f"the {label} ({null:.3g}) meets or beats the observed {observed:.3g}: "
            f"the claim is not distinguished from this null")


def _excess_finding(key: str, r: pd.DataFrame, prefix: str, name: str, th: dict[str, Any]) -> Finding:
    """F4b/F4c: |R| of each unit minus the mean |R| of its surrogates under ``name``."""
    null_abs = float(r[f"{prefix}_null_abs_mean"].mean())
    frac = float((r[f"{prefix}_q_value"] < th["alpha"]).mean())
    excess = r["abs_R"] - r[f"{prefix}_null_abs_mean"]
    w = stats.wilcoxon(excess) if len(excess) > 10 and np.any(excess != 0) else None
    p = float(w.pvalue) if w is not None else float("nan")
    med = float(excess.median())
    label = NULL_NAMES[name]
    mean_abs = float(r["abs_R"].mean())
    note = (f"{100 * frac:.0f} % of units individually significant after BH (the rule needs > 50 %); "
            f"{100 * float((excess < 0).mean()):.0f} % of units rotate less than their {label}'s mean; "
            + _versus(mean_abs, null_abs, "above", f"{label}'s mean |R|"))
    return _finding(key, med, th, {"median_excess": med, "p": p, "fraction_significant": frac}, p_value=p,
                    control={f"null_{name}_mean_abs_R": null_abs, "fraction_units_q<alpha": frac,
                             "mean_abs_R": mean_abs, "mean_abs_R_over_null": mean_abs / null_abs},
                    null_value=null_abs, null_label=f"{label}, mean |R| (observed: {mean_abs:.3g})",
                    null_side="above", note=note)


def rotation_finding(rot: pd.DataFrame, th: dict[str, Any], control: Control | None = None) -> list[Finding]:
    """F4: units rotate far more than layer-shuffled controls (F4a), and than stronger nulls:
    increment-shuffled surrogates (F4b) and the activation shuffle (F4c), where computed."""
    r = rot
    null = str(r["null"].iloc[0])
    paper_null = float(r["null_abs_mean"].mean())
    q = r["q_value"] if "q_value" in r else r["p_value"]
    frac = float((q < th["alpha"]).mean())
    mean_abs = float(r["abs_R"].mean())
    label = NULL_NAMES.get(null, f"{null}-shuffle null")
    out = [_finding("F4a", mean_abs, th, {"mean_abs_R": mean_abs, "null_value": paper_null,
                                          "fraction_significant": frac},
                    statistic=f"mean |R| (null: {null})",
                    control={f"null_{null}_mean_abs_R": paper_null, "fraction_units_q<alpha": frac},
                    null_value=paper_null, null_label=label, null_side="above",
                    note=f"{100 * frac:.0f} % of units significant after BH (the rule needs > 50 %); "
                         + _versus(mean_abs, paper_null, "above", label))]
    for key, name in (("F4b", "increments"), ("F4c", "activations")):
        prefix = {"increments": "incr", "activations": "act"}[name]
        if f"{prefix}_null_abs_mean" in r and name != null:
            if f"{prefix}_q_value" not in r:
                from .rotations import benjamini_hochberg
                r = r.assign(**{f"{prefix}_q_value": benjamini_hochberg(r[f"{prefix}_p_value"].to_numpy())})
            out.append(_excess_finding(key, r, prefix, name, th))
    if control is not None:
        name, s = control
        out[0].control[f"{name}_tokens_mean_abs_R"] = float(s["abs_R"].mean())
    return out


def dimensionality_finding(n_pcs: pd.DataFrame, means: pd.DataFrame, spectrum: pd.DataFrame, th: dict[str, Any],
                           seed: int = 0) -> list[Finding]:
    """F5a/b: trajectories are low-dimensional; later layers need fewer PCs (vs a column-permuted null)."""
    k90 = spectrum.loc[spectrum["cumulative"] >= 0.9, "component"]
    n_comp = int(spectrum["component"].max()) if len(spectrum) else int(th["n_components"])
    D = means["unit"].nunique()
    # column-permuted null: shuffling every unit over samples independently makes the
    # covariance diagonal, so the PCs are the units and k90 follows from the unit variances
    null_k = []
    for s, g in means.groupby("sublayer_index"):
        v = np.sort(g["sd"].to_numpy() ** 2)[::-1]
        c = np.cumsum(v) / v.sum() if v.sum() > 0 else np.ones_like(v)
        null_k.append(int(np.searchsorted(c, 0.9) + 1))
    null_ratio = float(np.median(null_k)) / D
    if len(k90):
        pooled, bound, note = float(k90.min()), "", ""
    else:
        # 90 % is not reached within the n_comp computed PCs: k90 > n_comp, a lower bound
        pooled, bound = float(n_comp + 1), ">"
        note = f"90 % not reached within the {n_comp} computed PCs"
    null_label = "column-permuted null"
    f5a = _finding("F5a", pooled / D, th, {"ratio": pooled / D, "null_value": null_ratio,
                                           "lower_bound": float(bool(bound))},
                   control={"pcs_for_90": pooled, "D": D, "column_permuted_null_median_pcs90": float(np.median(null_k))},
                   note="; ".join(x for x in (note, _versus(pooled / D, null_ratio, "below", null_label)) if x),
                   bound=bound, null_value=null_ratio, null_label=null_label, null_side="below")
    n = n_pcs.sort_values("sublayer_index")
    depth = n["sublayer_index"].to_numpy() / max(1, n["sublayer_index"].max())
    k = n["n_pcs_90"].to_numpy(dtype=float)
    reached = int(np.isfinite(k).sum())
    # a null whose PC count is the same at every depth has no trend: rho 0, not undefined
    null_rho = _spearman(depth, null_k)[0] if np.ptp(null_k) > 0 else 0.0
    ctrl_b = {"first_sublayer_pcs90": float(k[0]), "last_sublayer_pcs90": float(k[-1]),
              "sublayers_reaching_90": reached, "column_permuted_null_rho": null_rho}
    if reached < max(3, len(k) / 2):
        # mostly censored ("> n_comp"): a rank correlation over ties is not an estimate
        f5b = _finding("F5b", float("nan"), th, {"rho": float("nan"), "p": float("nan"), "null_value": null_rho},
                       control=ctrl_b, null_value=null_rho, null_label=null_label, null_side="below",
                       note=f"undefined because only {reached} of {len(k)} sublayers reach 90 % within {n_comp} PCs")
    else:
        k = np.where(np.isnan(k), n_comp + 1, k)  # the few not reached within the computed PCs: censored
        rho, lo, hi, p = _spearman_boot(depth, k, th["n_boot"], seed)
        f5b = _finding("F5b", rho, th, {"rho": rho, "p": p, "null_value": null_rho}, ci_low=lo, ci_high=hi,
                       p_value=p, control=ctrl_b, null_value=null_rho, null_label=null_label, null_side="below",
                       note=_versus(rho, null_rho, "below", f"{null_label}'s rho"))
    return [f5a, f5b]


def _key_order(key: str) -> tuple:
    """F1a < F1b < F2a < ... < F2d < F3 < F10 (natural order of finding keys)."""
    return tuple(int(t) if t.isdigit() else t for t in re.findall(r"\d+|\D+", key))


def perturbation_finding(metrics: pd.DataFrame, th: dict[str, Any]) -> list[Finding]:
    """F5c: mid-layer teleports return toward the control better than first/last-layer ones,
    ``th["recovery_steps"]`` sublayers after the teleport."""
    steps = int(th["recovery_steps"])
    rows = {}
    for layer, g in metrics.groupby("layer"):
        g = g[g["steps_after"] <= steps].sort_values("steps_after")
        at = float(g["mse_pc"].iloc[0])
        rows[int(layer)] = float(g["mse_pc"].iloc[-1] / at) if at > 0 else float("nan")
    layers = sorted(rows)
    undefined = ""
    if len(layers) < 3:
        undefined = f"undefined because only {len(layers)} layer(s) were perturbed (needs >= 3)"
    elif not all(np.isfinite(v) for v in rows.values()):
        zero = [l for l, v in rows.items() if not np.isfinite(v)]
        undefined = f"undefined because the distance to the control at teleport is 0 at layer(s) {zero}"
    if undefined:
        return [_finding("F5c", float("nan"), th, {"gain": float("nan")}, note=undefined,
                         control={f"ratio_layer_{l}": v for l, v in rows.items()})]
    ends = [rows[layers[0]], rows[layers[-1]]]
    mids = [rows[l] for l in layers[1:-1]]
    gain = float(np.mean(ends) - np.mean(mids))
    return [_finding("F5c", gain, th, {"gain": gain},
                     statistic=f"mean distance ratio ({steps} sublayers after / at teleport), first+last minus "
                               "middle layers",
                     control={f"ratio_layer_{l}": v for l, v in rows.items()},
                     note="distance ratio per layer: " + ", ".join(f"{l}: {v:.2g}" for l, v in rows.items()))]


def condition_findings(tables: dict[str, pd.DataFrame], control: dict[str, pd.DataFrame] | None,
                       control_name: str | None, th: dict[str, Any], seed: int = 0) -> list[Finding]:
    """Every finding on one condition of a model (F1-F5).

    Parameters
    ----------
    tables : the primary condition's tables: ``units``, ``transitions``, ``sublayers``,
        ``rotations``, ``n_pcs``, ``means``, ``spectrum`` and, if teleports ran, ``teleport``
        (the teleport metrics)
    control, control_name : the other condition's tables (same keys) and its name, or None
    th : thresholds (config ``findings:`` plus ``n_components``)
    """
    def ctrl(key: str) -> Control | None:
        return None if control is None else (str(control_name), control[key])

    out = []
    out += correlation_finding(tables["units"], th, seed, ctrl("units"))
    out += magnitude_finding(tables["transitions"], tables["sublayers"], th, seed)
    out += mi_finding(tables["units"], th, seed, ctrl("units"))
    out += rotation_finding(tables["rotations"], th, ctrl("rotations"))
    out += dimensionality_finding(tables["n_pcs"], tables["means"], tables["spectrum"], th, seed)
    if "teleport" in tables:
        out += perturbation_finding(tables["teleport"], th)
    return out


def model_findings(tables: dict[str, dict[str, pd.DataFrame]], th: dict[str, Any], seed: int = 0
                   ) -> dict[str, list[Finding]]:
    """The findings of one model, for each of its conditions (§1, §3; docs/findings.md).

    Parameters
    ----------
    tables : ``{condition: {table name: DataFrame}}`` (names as in :func:`condition_findings`)

    Returns
    -------
    ``{condition: findings}``: each condition tested as the primary one, with the first other
    condition, if any, as its control.
    """
    out = {}
    for c in tables:
        others = [x for x in tables if x != c]
        control = others[0] if others else None
        out[c] = condition_findings(tables[c], tables[control] if control else None, control, th, seed)
    return out


def findings_key(condition: str) -> str:
    """Key of a condition's findings in findings.json: ``findings`` (original) or ``findings_<condition>``."""
    return "findings" if condition == "original" else f"findings_{condition}"


def _cell(f: dict[str, Any]) -> str:
    """One model's cell: verdict, value, interval/p, the null with its direction, the note."""
    note = f.get("note") or ""
    if f["value"] is None:  # undefined: no interval or p-value either
        return f"**{f['verdict']}**: n/a ({note or 'undefined'})"
    val = f"{f.get('bound') or ''}{f['value']:.3g}"
    extra = ""
    if f.get("ci_low") is not None and f.get("ci_high") is not None:
        extra += f" [{f['ci_low']:.2g}, {f['ci_high']:.2g}]"
    if f.get("p_value") is not None:
        extra += f" p={f['p_value']:.2g}"
    if f.get("null_value") is not None:  # after the estimate's own interval, so it cannot read as the null's
        side = f" (claim: {f['null_side']} it)" if f.get("null_side") else ""
        extra += f"; null: {f['null_value']:.3g} ({f.get('null_label') or 'null'}){side}"
    if note:
        extra += f". {note[0].upper()}{note[1:]}"
    return f"**{f['verdict']}**: {val}{extra}"


def findings_markdown(per_model: dict[str, list[dict[str, Any]]]) -> str:
    """One table, findings as rows and models as columns: value, interval/p, null, verdict, note.

    The ``rule`` column is each finding's verdict rule with the thresholds filled in
    (:func:`rule_text`), so the table reads without the docs.
    """
    models = list(per_model)
    keys = sorted(dict.fromkeys(f["key"] for fs in per_model.values() for f in fs), key=_key_order)
    by = {m: {f["key"]: f for f in fs} for m, fs in per_model.items()}
    lines = ["| finding | statistic | rule | " + " | ".join(models) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in models) + " |"]
    for k in keys:
        any_f = next(by[m][k] for m in models if k in by[m])
        cells = [_cell(by[m][k]) if k in by[m] else "n/a" for m in models]
        rule = any_f.get("rule") or (rule_text(k) if k in RULES else "")
        row = " | ".join(x.replace("|", "\\|") for x in (f"{k}: {any_f['claim']}", any_f["statistic"], rule))
        lines.append(f"| {row} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def cae_markdown(diagnostics: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The CAE fit diagnostics of every model and condition (``{(model, condition): diagnostics}``,
    :func:`transformer_dynamics.autoencoder.fit_diagnostics`) as a table."""
    lines = ["| model | condition | fit | bottleneck spread over samples / over all vectors | best validation loss "
             "(mean-vector baseline) | epochs (kept) |", "| --- | --- | --- | --- | --- | --- |"]
    for (m, c), d in diagnostics.items():
        fit = "usable" if d["usable"] else "**not usable: Fig 3 is not a result**"
        ratio = d["sample_spread"] / d["total_spread"] if d["total_spread"] else float("nan")
        base = d.get("mean_baseline_val_loss")
        lines.append(f"| {m} | {c} | {fit}: {d['status']} | {ratio:.2g} (collapse below {d['collapse_floor']:g}) | "
                     f"{d['best_val_loss']:.3g} ({'n/a' if base is None else f'{base:.3g}'}) | "
                     f"{d['epochs_run']} of {d['max_epochs']} ({d['best_epoch']}) |")
    return "\n".join(lines) + "\n"
