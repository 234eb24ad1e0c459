"""Compare two results directories file by file: identical bytes, or the largest difference.

    python benchmarks/compare_outputs.py RESULTS_A RESULTS_B [--ignore logs benchmarks ...]

For every file under A (logs, benchmark timings and Snakemake metadata skipped by default):
``identical`` when the bytes match; otherwise, for tables (.parquet, .csv, .tsv) and arrays
(.npz, .npy, Zarr chunks are compared through ``rs``), the largest absolute and relative
difference of the numeric columns and whether the non-numeric ones match; for other files
(.png, .json, .md, .pt) just ``differs``. Prints one line per file that is not identical
and a summary. Used to check that a speed-only change leaves the outputs unchanged and to
state how far numerics moved when they do.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

SKIP = ("logs", "benchmarks", ".snakemake")


def _numeric_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    d = np.where(both_nan, 0.0, np.abs(a - b))
    if np.isnan(d).any():
        return float("inf"), float("inf")
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.where(scale > 0, d / np.where(scale > 0, scale, 1), 0.0)
    return float(d.max(initial=0.0)), float(rel.max(initial=0.0))


def compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> str:
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return f"shape/columns differ: {a.shape} vs {b.shape}"
    worst_abs = worst_rel = 0.0
    worst_col = ""
    other_equal = True
    for c in a.columns:
        if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c]):
            d, r = _numeric_diff(a[c].to_numpy(), b[c].to_numpy())
            if r > worst_rel or (r == worst_rel and d > worst_abs):
                worst_abs, worst_rel, worst_col = d, r, c
        else:
            other_equal &= bool((a[c].astype(object).fillna("<NA>").astype(str).to_numpy()
                                 == b[c].astype(object).fillna("<NA>").astype(str).to_numpy()).all())
    return (f"max abs diff {worst_abs:.3g}, max rel diff {worst_rel:.3g} (column {worst_col})"
            + ("" if other_equal else "; non-numeric columns differ"))


def compare_file(fa: Path, fb: Path) -> str | None:
    """None when identical, else a description of the difference."""
    if fa.read_bytes() == fb.read_bytes():
        return None
    suf = fa.suffix
    try:
        if suf == ".parquet":
            return compare_tables(pd.read_parquet(fa), pd.read_parquet(fb))
        if suf in {".csv", ".tsv"}:
            sep = "\t" if suf == ".tsv" else ","
            return compare_tables(pd.read_csv(fa, sep=sep), pd.read_csv(fb, sep=sep))
        if suf == ".npz":
            za, zb = np.load(fa), np.load(fb)
            parts = []
            for k in za.files:
                d, r = _numeric_diff(za[k], zb[k]) if k in zb.files else (float("inf"), float("inf"))
                parts.append((r, d, k))
            r, d, k = max(parts)
            return f"max abs diff {d:.3g}, max rel diff {r:.3g} (array {k})"
        if suf == ".json":
            ja, jb = json.loads(fa.read_text()), json.loads(fb.read_text())
            return "differs (json)" if ja != jb else "same content, different bytes (json)"
    except Exception as exc:  # unreadable: report, do not stop
        return f"differs (could not compare: {type(exc).__name__}: {exc})"
    return "differs"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--ignore", nargs="*", default=list(SKIP), help="path parts to skip")
    args = ap.parse_args()
    n_same = 0
    diffs = []
    missing = []
    for fa in sorted(p for p in args.a.rglob("*") if p.is_file()):
        rel = fa.relative_to(args.a)
        if any(part in args.ignore for part in rel.parts) or ".zarr" in str(rel):
            continue
        fb = args.b / rel
        if not fb.exists():
            missing.append(str(rel))
            continue
        msg = compare_file(fa, fb)
        if msg is None:
            n_same += 1
        else:
            diffs.append((str(rel), msg))
    # activation stores: compare the rs arrays (chunk bytes can differ only if values do)
    for za in sorted(args.a.rglob("*.zarr")):
        rel = za.relative_to(args.a)
        zb = args.b / rel
        if zb.exists():
            from transformer_dynamics import store

            d, r = _numeric_diff(store.read_rs(za), store.read_rs(zb))
            if d == 0:
                n_same += 1
            else:
                diffs.append((f"{rel} (rs)", f"max abs diff {d:.3g}, max rel diff {r:.3g}"))
    for rel, msg in diffs:
        print(f"{rel}: {msg}")
    if missing:
        print(f"only in {args.a}: {missing}")
    print(f"\n{n_same} identical, {len(diffs)} different, {len(missing)} missing in {args.b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
