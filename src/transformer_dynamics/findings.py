"""The paper's headline findings as tests with statistics, nulls and verdicts (§1, §3).

Each function reads the analysis tables of one model and condition, the *primary* (the
condition tested), and, where a condition contrast is the control, those of the *control*
condition (the other one, if the run has it), and returns :class:`Finding` s: the statistic,
its value, an interval or p-value where one applies, the value under the paper's control and
under a stronger null, and a verdict ``holds`` / ``does not hold`` / ``inconclusive``.
Control values computed on the other condition are keyed by its name (e.g.
``shuffled_median_r`` when the original condition is tested). :func:`model_findings` tests
every condition of a model. Definitions and thresholds: docs/findings.md; thresholds come
from config (``findings:``; defaults in the workflow's schema).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

Control = tuple[str, pd.DataFrame]
"""The control condition's table of the same kind: ``(condition name, table)``."""


@dataclass
class Finding:
    """One finding tested on one model."""

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

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


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
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(_spearman(x[i], y[i])[0])
    lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return float(rho), float(lo), float(hi), float(p)


def _verdict(ok: bool, significant: bool) -> str:
    if ok and significant:
        return HOLDS
    if not ok and significant:
        return FAILS
    return INCONCLUSIVE


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
    out = [
        Finding("F1a", "successive-sublayer correlations are high (> threshold)", "median r over units x transitions",
                high, control={**ctrl, "fraction_transitions_above": float((med > th["min_median_r"]).mean())},
                verdict=HOLDS if high > th["min_median_r"] else FAILS),
        Finding("F1b", "correlations rise with depth", "Spearman rho(depth, median r per transition)",
                rho, lo, hi, p, ctrl, _verdict(rho > 0, p < th["alpha"])),
    ]
    per_unit = u.pivot_table(index="unit", columns="type", values="pearson_r", aggfunc="mean").dropna()
    diff = per_unit["within"] - per_unit["cross"]
    w = stats.wilcoxon(diff) if len(diff) > 10 and np.any(diff != 0) else None
    pw = float(w.pvalue) if w is not None else float("nan")
    out.append(Finding("F1c", "within-layer transitions correlate more than cross-layer ones",
                       "median over units of mean r(within) - mean r(cross); Wilcoxon signed-rank",
                       float(diff.median()), p_value=pw, verdict=_verdict(diff.median() > 0, pw < th["alpha"])))
    return out


def magnitude_finding(transitions: pd.DataFrame, sublayers: pd.DataFrame, th: dict[str, Any],
                      seed: int = 0) -> list[Finding]:
    """F2: magnitude and velocity grow with depth, steepest in the last third; cosine rises."""
    sub, tr = sublayers, transitions
    out = []
    for key, claim, x, y in (
        ("F2a", "activation magnitude grows with depth", sub["depth"].to_numpy(), sub["norm_mean"].to_numpy()),
        ("F2b", "velocity grows with depth", tr["depth"].to_numpy(), tr["velocity_mean"].to_numpy()),
        ("F2d", "cosine similarity rises with depth", tr["depth"].to_numpy(), tr["cosine_mean"].to_numpy()),
    ):
        rho, lo, hi, p = _spearman_boot(x, y, th["n_boot"], seed)
        out.append(Finding(key, claim, "Spearman rho(depth, mean over samples)", rho, lo, hi, p,
                           verdict=_verdict(rho > 0, p < th["alpha"])))
    # steepest growth in the last third: slope of log-norm per unit depth, last third vs the rest
    d, logn = sub["depth"].to_numpy(), np.log(sub["norm_mean"].to_numpy())
    last = d >= 2 / 3
    s_last = np.polyfit(d[last], logn[last], 1)[0]
    s_rest = np.polyfit(d[~last], logn[~last], 1)[0]
    out.append(Finding("F2c", "growth is steepest in the last third",
                       "slope of log ||h|| vs depth, last third / first two thirds", float(s_last / s_rest),
                       control={"slope_last_third": float(s_last), "slope_first_two_thirds": float(s_rest)},
                       verdict=HOLDS if s_last > s_rest else FAILS))
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
    return [Finding("F3", "MI drops sharply in early layers", "Spearman rho(depth, mean MI) over the first third",
                    rho, lo, hi, p, ctrl, _verdict(rho < 0, p < th["alpha"]))]


def rotation_finding(rot: pd.DataFrame, th: dict[str, Any], control: Control | None = None) -> list[Finding]:
    """F4: units rotate far more than layer-shuffled controls, and than stronger nulls."""
    r = rot
    paper_null = float(r["null_abs_mean"].mean())
    ctrl = {"null_points_mean_abs_R": paper_null}
    q = r["q_value"] if "q_value" in r else r["p_value"]
    out = [Finding("F4a", "units rotate more than the layer-shuffle control (paper's null)",
                   f"mean |R| (null: {r['null'].iloc[0]})", float(r["abs_R"].mean()),
                   control={**ctrl, "fraction_units_q<alpha": float((q < th["alpha"]).mean())},
                   null_value=paper_null, null_label=f"{r['null'].iloc[0]}-shuffle null",
                   verdict=_verdict(r["abs_R"].mean() > paper_null, float((q < th["alpha"]).mean()) > 0.5))]
    if "incr_null_abs_mean" in r:
        inc = float(r["incr_null_abs_mean"].mean())
        frac = float((r["incr_q_value"] < th["alpha"]).mean())
        excess = r["abs_R"] - r["incr_null_abs_mean"]
        w = stats.wilcoxon(excess) if np.any(excess != 0) else None
        p = float(w.pvalue) if w is not None else float("nan")
        out.append(Finding("F4b", "units rotate more than increment-shuffled surrogates (stronger null)",
                           "median over units of |R| - mean |R| of re-integrated shuffled increments",
                           float(excess.median()), p_value=p,
                           control={"null_increments_mean_abs_R": inc, "fraction_units_q<alpha": frac,
                                    "mean_abs_R_over_null": float(r["abs_R"].mean() / inc)},
                           null_value=0.0, null_label="no excess",
                           verdict=_verdict(excess.median() > 0, p < th["alpha"]),
                           note=f"{100 * frac:.0f} % of units individually significant after BH"))
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
        verdict = HOLDS if pooled / D < 0.1 else FAILS
    else:
        # 90 % is not reached within the n_comp computed PCs: k90 > n_comp, a lower bound
        pooled, bound = float(n_comp + 1), ">"
        note = f"90 % not reached within the {n_comp} computed PCs"
        verdict = FAILS if pooled / D >= 0.1 else INCONCLUSIVE
    n = n_pcs.sort_values("sublayer_index")
    depth = n["sublayer_index"].to_numpy() / max(1, n["sublayer_index"].max())
    k = n["n_pcs_90"].to_numpy(dtype=float)
    reached = int(np.isfinite(k).sum())
    ctrl_b = {"first_sublayer_pcs90": float(k[0]), "last_sublayer_pcs90": float(k[-1]),
              "sublayers_reaching_90": reached, "column_permuted_null_rho": _spearman(depth, null_k)[0]}
    if reached < max(3, len(k) / 2):
        # mostly censored ("> n_comp"): a rank correlation over ties is not an estimate
        f5b = Finding("F5b", "later layers need fewer PCs", "Spearman rho(depth, PCs for 90 % per sublayer)",
                      float("nan"), control=ctrl_b, verdict=INCONCLUSIVE,
                      note=f"undefined: only {reached} of {len(k)} sublayers reach 90 % within {n_comp} PCs")
    else:
        k = np.where(np.isnan(k), n_comp + 1, k)  # the few not reached within the computed PCs: censored
        rho, lo, hi, p = _spearman_boot(depth, k, th["n_boot"], seed)
        f5b = Finding("F5b", "later layers need fewer PCs", "Spearman rho(depth, PCs for 90 % per sublayer)", rho,
                      lo, hi, p, control=ctrl_b, verdict=_verdict(rho < 0, p < th["alpha"]),
                      null_value=ctrl_b["column_permuted_null_rho"], null_label="column-permuted null")
    out = [
        Finding("F5a", "trajectories are low-dimensional", "PCs for 90 % of pooled variance / D", pooled / D,
                control={"pcs_for_90": pooled, "D": D, "column_permuted_null_median_pcs90": float(np.median(null_k))},
                verdict=verdict, note=note, bound=bound, null_value=null_ratio, null_label="column-permuted null"),
        f5b,
    ]
    return out


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
        rows[int(layer)] = float(g["mse_pc"].iloc[-1] / g["mse_pc"].iloc[0])
    layers = sorted(rows)
    if len(layers) < 3:
        return [Finding("F5c", "mid-layer perturbations recover better", "", float("nan"), note="needs >= 3 layers")]
    ends = [rows[layers[0]], rows[layers[-1]]]
    mids = [rows[l] for l in layers[1:-1]]
    gain = float(np.mean(ends) - np.mean(mids))
    return [Finding("F5c", "mid-layer teleports return toward the control better than first/last-layer ones",
                    f"mean distance ratio ({steps} sublayers after / at teleport), first+last minus middle layers",
                    gain, control={f"ratio_layer_{l}": v for l, v in rows.items()},
                    verdict=HOLDS if gain > th["min_recovery_gain"] else (FAILS if gain < 0 else INCONCLUSIVE))]


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


def findings_markdown(per_model: dict[str, list[dict[str, Any]]]) -> str:
    """One table, findings as rows and models as columns: value, interval/p, verdict."""
    models = list(per_model)
    keys = sorted(dict.fromkeys(f["key"] for fs in per_model.values() for f in fs), key=_key_order)
    by = {m: {f["key"]: f for f in fs} for m, fs in per_model.items()}
    lines = ["| finding | statistic | " + " | ".join(models) + " |", "| --- | --- | " + " | ".join("---" for _ in models) + " |"]
    for k in keys:
        any_f = next(by[m][k] for m in models if k in by[m])
        cells = []
        for m in models:
            f = by[m].get(k)
            if f is None:
                cells.append("n/a")
                continue
            if f["value"] is None:  # undefined: no interval or p-value either
                cells.append(f"**{f['verdict']}**: n/a ({f.get('note') or 'undefined'})")
                continue
            val = f"{f.get('bound') or ''}{f['value']:.3g}"
            extra = ""
            if f.get("ci_low") is not None and f.get("ci_high") is not None:
                extra += f" [{f['ci_low']:.2g}, {f['ci_high']:.2g}]"
            if f.get("p_value") is not None:
                extra += f" p={f['p_value']:.2g}"
            if f.get("null_value") is not None:  # after the estimate's own interval, so it cannot read as the null's
                extra += f"; null: {f['null_value']:.3g} ({f.get('null_label') or 'null'})"
            if f.get("bound") and f.get("note"):
                extra += f" ({f['note']})"
            cells.append(f"**{f['verdict']}**: {val}{extra}")
        row = f"{k}: {any_f['claim']} | {any_f['statistic']}".replace("|", "\\|").replace(" \\| ", " | ", 1)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
