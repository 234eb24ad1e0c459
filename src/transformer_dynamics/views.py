"""Views: the observations an analysis job runs on (§2.2-2.8; position buckets beyond the paper).

A view is the paper's last token of every text (the whole last-token store, ``bucket=None``)
or one position bucket (:mod:`transformer_dynamics.positions`): a row subset of the position
store, at most ``cap`` tokens drawn with the seed. :func:`open_view` returns either as an
:class:`~transformer_dynamics.store.ActivationStore`, so every analysis job (unit-block
statistics and MI, rotation blocks, vector statistics, PCA) runs on it unchanged, fanned out
over unit blocks like the paper's. :func:`view_status` says whether a bucket can be analysed
at all (enough tokens, not one repeated vector).

The findings per bucket reuse :func:`transformer_dynamics.findings.model_findings`
(:func:`findings_by_bucket`); the CAE (§2.7) is trained on each bucket view by the paper's
``train_autoencoder`` job, with the split drawn over texts (no text on both sides), and
:func:`cae_by_bucket` puts the buckets' explained variance in one table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import store
from .findings import model_findings
from .positions import bucket_rows
from .provenance import check_made_for
from .store import ActivationStore


def open_view(path: str | Path, bucket: str | None = None, cap: int | None = None, seed: int = 0,
              made_for: dict[str, Any] | None = None) -> ActivationStore:
    """The observations of a view: every row of the store at ``path`` (``bucket=None``: the
    last-token store, the paper), or the rows of position bucket ``bucket`` of a position store
    (at most ``cap``, drawn with ``seed``; :func:`transformer_dynamics.positions.bucket_rows`).

    ``made_for``: the settings the job expects the store to be made for
    (:meth:`transformer_dynamics.jobs.Plan.store_made_for`); a store made for others raises
    :class:`~transformer_dynamics.provenance.MadeForError` naming the mismatch.
    """
    g = store.open_store(path)
    if made_for is not None:
        check_made_for(path, store.made_for(dict(g.attrs)), made_for)
    if bucket is None:
        return ActivationStore(g)
    t = store.row_table(g)
    return ActivationStore(g, bucket_rows(t["position"], t["is_last"], bucket, cap, seed))


def degenerate_reason(acts: ActivationStore, min_tokens: int) -> str | None:
    """Why a bucket cannot be analysed (too few tokens, or one vector repeated), or None."""
    n = acts.n_samples
    if n < min_tokens:
        return f"{n} tokens (fewer than positions.min_tokens = {min_tokens})"
    first = None
    for block in acts.chunks(rows=4096):  # any row unlike the first one, in any block
        first = block[0] if first is None else first
        if np.any(block != first):
            return None
    return "every token has the same residual stream (e.g. BOS at position 0: same token, no context)"


def view_status(path: str | Path, bucket: str, cap: int | None, seed: int, min_tokens: int) -> dict[str, Any]:
    """``{bucket, n_tokens, analysed, reason}`` of a position bucket (read by every job of the view)."""
    acts = open_view(path, bucket, cap, seed)
    reason = degenerate_reason(acts, min_tokens)
    return {"bucket": bucket, "n_tokens": acts.n_samples, "analysed": reason is None, "reason": reason}


def findings_by_bucket(
    tables: dict[str, dict[str, dict[str, pd.DataFrame] | None]],
    n_tokens: dict[str, dict[str, int]],
    skipped: dict[str, dict[str, str]],
    th: dict[str, Any],
    seed: int = 0,
) -> pd.DataFrame:
    """Every finding per bucket and condition, one row each.

    Parameters
    ----------
    tables : ``{bucket: {condition: tables or None}}`` (None: the bucket was not analysed)
    n_tokens : ``{bucket: {condition: tokens analysed}}``
    skipped : ``{bucket: {condition: reason}}`` for the buckets not analysed
    th : thresholds (config ``findings:`` plus ``n_components``)

    Returns
    -------
    Columns ``bucket``, ``condition``, ``n_tokens``, ``key``, ``claim``, ``statistic``,
    ``value``, ``ci_low``, ``ci_high``, ``p_value``, ``null_value``, ``verdict``, ``note``.
    Each condition is tested with the other condition's tables of the same bucket as its
    control, as :func:`transformer_dynamics.findings.model_findings` does for the last token.
    """
    rows = []
    for bucket, by_cond in tables.items():
        ok = {c: t for c, t in by_cond.items() if t is not None}
        found = model_findings(ok, th, seed) if ok else {}
        for cond in by_cond:
            if cond not in found:
                rows.append({"bucket": bucket, "condition": cond, "n_tokens": n_tokens[bucket][cond],
                             "key": None, "verdict": "not analysed", "note": skipped[bucket].get(cond, "")})
                continue
            for f in found[cond]:
                d = f.to_dict()
                rows.append({"bucket": bucket, "condition": cond, "n_tokens": n_tokens[bucket][cond],
                             **{k: d[k] for k in ("key", "claim", "statistic", "value", "ci_low", "ci_high",
                                                  "p_value", "null_value", "verdict", "note", "bound")}})
    columns = ["bucket", "condition", "n_tokens", "key", "claim", "statistic", "value", "ci_low", "ci_high",
               "p_value", "null_value", "verdict", "note", "bound"]
    return pd.DataFrame(rows, columns=columns)


def cae_by_bucket(explained: dict[str, dict[str, pd.DataFrame]], n_tokens: dict[str, dict[str, int]]) -> pd.DataFrame:
    """One table of the per-bucket CAEs' explained variance (§2.7 on each bucket view).

    Parameters
    ----------
    explained : ``{bucket: {condition: explained-variance table}}`` of the ``train_autoencoder``
        jobs of the bucket views (empty for a bucket that was not analysed)
    n_tokens : ``{bucket: {condition: tokens in the view}}``

    Returns
    -------
    Columns ``condition``, ``bucket``, ``n_tokens`` and those of
    :func:`transformer_dynamics.autoencoder.encode_and_score`'s table (``sublayer``,
    ``explained_variance``, ...), conditions then buckets in the order given.
    """
    parts = [t.assign(condition=c, bucket=b, n_tokens=n_tokens[b][c])
             for b, by_cond in explained.items() for c, t in by_cond.items() if len(t)]
    if not parts:
        return pd.DataFrame(columns=["condition", "bucket", "n_tokens", "sublayer", "explained_variance"])
    out = pd.concat(parts, ignore_index=True)
    order = {c: i for i, c in enumerate(dict.fromkeys(c for by in explained.values() for c in by))}
    first = ["condition", "bucket", "n_tokens"]
    out = out.sort_values("condition", key=lambda x: x.map(order), kind="stable")
    return out[first + [c for c in out.columns if c not in first]].reset_index(drop=True)


def findings_by_position_markdown(model: str, table: pd.DataFrame) -> str:
    """A markdown view of :func:`findings_by_bucket`: per condition, findings as rows and
    position buckets as columns (verdict, value and interval), tokens analysed in the header."""
    from .findings import _key_order
    from .positions import BUCKETS

    out = []
    for cond in dict.fromkeys(table["condition"]):
        t = table[table["condition"] == cond]
        buckets = [b for b in BUCKETS if b in set(t["bucket"])]
        n = t.groupby("bucket")["n_tokens"].first()
        out.append(f"### {model}, {cond} condition, by token position\n")
        out.append("| finding | " + " | ".join(f"{b} ({int(n[b])} tok.)" for b in buckets) + " |")
        out.append("| --- | " + " | ".join("---" for _ in buckets) + " |")
        keys = sorted(t["key"].dropna().unique(), key=_key_order)
        for k in keys:
            cells = []
            for b in buckets:
                row = t[(t["bucket"] == b) & (t["key"] == k)]
                if row.empty:
                    why = t.loc[(t["bucket"] == b) & t["key"].isna(), "note"]
                    cells.append(f"not analysed ({why.iloc[0]})" if len(why) else "n/a")
                    continue
                r = row.iloc[0]
                if pd.isna(r["value"]):
                    cells.append(f"**{r['verdict']}**: n/a")
                    continue
                cell = f"**{r['verdict']}**: {r['bound'] if isinstance(r.get('bound'), str) else ''}{r['value']:.3g}"
                if pd.notna(r.get("ci_low")) and pd.notna(r.get("ci_high")):
                    cell += f" [{r['ci_low']:.2g}, {r['ci_high']:.2g}]"
                if pd.notna(r.get("null_value")):
                    cell += f"; null {r['null_value']:.3g}"
                cells.append(cell)
            out.append(f"| {k} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"
