"""The analysis stages at the paper's shape: N samples x 64 sublayers x 4096 units.

    python benchmarks/scale.py [--n 2000 10000] [--workdir /path/with/space] [--keep]

For each N: writes a synthetic activation store through the project's store API
(``store.create_store`` / ``RowWriter`` / ``finalize``: N x 64 x 4096 float32, 10.5 GB at
N=10,000), then runs the analysis stages on it through the real Snakefile (unit-block
statistics + MI, rotations, vector statistics, PCA, the CAE limited to ``--cae-epochs``,
figures 1-3; the stages before the store and the perturbations need a model and are left
out with ``--allowed-rules``), and prints per stage: jobs, summed wall time, peak RSS,
requested mem_mb, and the projection to N=100,000 (time linear in N through the measured
points, and so is peak RSS: flat for the streaming stages, growing for the unit-block stages
that hold a whole block of units for all samples).

The synthetic residual stream has the structure that matters to the cost and memory of the
analyses: a norm that grows with depth, strongly correlated successive sublayers (a random
walk with small increments), a low-rank shared component (so PCA has a spectrum), per-unit
offsets, and a few heavy-tailed "massive" units (Student t with 2 degrees of freedom, 100x
the scale). Exits 1 when a job used more memory than it requested or an analysis job
exceeded 8 GB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_resources import job_table, planned_jobs  # noqa: E402

from transformer_dynamics import store  # noqa: E402
from transformer_dynamics.sublayers import sublayer_labels  # noqa: E402

MODEL = "synthetic-8b-shape"
N_LAYERS, D_MODEL = 32, 4096
ANALYSIS_RULES = [
    "unit_block_stats", "gather_unit_stats", "rotation_block", "gather_rotations", "vector_stats",
    "fit_pca", "train_autoencoder", "figure1", "figure2", "figure3",
]
LIMIT_MB = 8000


def synthetic_chunk(rng: np.random.Generator, n: int, S: int, D: int, basis: np.ndarray,
                    offsets: np.ndarray, massive: np.ndarray) -> np.ndarray:
    """``(n, S, D)`` float32: random walk over sublayers with growing steps, low-rank part, massive units."""
    k = basis.shape[0]
    steps = rng.standard_normal((n, S, D), dtype=np.float32)
    steps *= np.linspace(0.05, 0.4, S, dtype=np.float32)[None, :, None]  # norm grows with depth
    steps[:, 0] = rng.standard_normal((n, D), dtype=np.float32)
    x = np.cumsum(steps, axis=1, out=steps)
    z = rng.standard_normal((n, S, k), dtype=np.float32) * np.linspace(1, 4, S, dtype=np.float32)[None, :, None]
    x += z @ basis
    x += offsets
    t = rng.standard_t(2, size=(n, S, len(massive))).astype(np.float32)
    x[:, :, massive] = 100 * np.cumsum(t, axis=1) / np.sqrt(np.arange(1, S + 1, dtype=np.float32))[None, :, None]
    return x


def write_store(path: Path, n: int, d_model: int = D_MODEL, seed: int = 0, sample_chunk: int = 100,
                unit_chunk: int = 64) -> float:
    """Write the synthetic store at ``path``; returns seconds."""
    t0 = time.perf_counter()
    S, D = 2 * N_LAYERS, d_model
    rng = np.random.default_rng(seed)
    basis = (rng.standard_normal((8, D)) / np.sqrt(D) * 8).astype(np.float32)
    offsets = rng.normal(0, 0.5, D).astype(np.float32)
    massive = rng.choice(D, 4, replace=False)
    ids = np.arange(n)
    g = store.create_store(
        path, sublayer_labels(N_LAYERS), D, ids, ids, [[1]] * n, row_chunk=sample_chunk, unit_chunk=unit_chunk,
        attrs={"model": MODEL, "model_source": "synthetic (benchmarks/scale.py)", "seed": seed},
    )
    writer = store.RowWriter(g)
    for c in range(-(-n // sample_chunk)):
        s0, s1 = c * sample_chunk, min(n, (c + 1) * sample_chunk)
        writer.add(s0, synthetic_chunk(np.random.default_rng([seed, c]), s1 - s0, S, D, basis, offsets, massive))
    writer.close()
    store.finalize(path)
    return time.perf_counter() - t0


def run_stages(workdir: Path, n: int, cae_epochs: int, d_model: int = D_MODEL) -> tuple[float, pd.DataFrame]:
    """Run the analysis stages through Snakemake; returns (wall seconds, per-job table)."""
    import subprocess

    cfg = {
        "models": {MODEL: {"source": "synthetic", "n_layers": N_LAYERS, "d_model": d_model}},
        "n_samples": n, "conditions": ["original"],
        "autoencoder": {"max_epochs": cae_epochs},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/{MODEL}/figures/fig{i}_original.png" for i in (1, 2, 3)]
    targets += [f"results/{MODEL}/pca/original/pca.npz", f"results/{MODEL}/rotations/original.summary.json"]
    args = ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--allowed-rules", *ANALYSIS_RULES, "--"]
    repo = Path(__file__).resolve().parents[1]
    t0 = time.perf_counter()
    # mtime only: a resumed benchmark keeps the jobs it finished (their benchmark files are the data)
    res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--cores", "all",
                          "--rerun-triggers", "mtime", "--rerun-incomplete", *args, *targets], cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"snakemake failed at N={n}:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    jobs = planned_jobs(args + targets, workdir)
    return wall, job_table(jobs, workdir)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--workdir", type=Path, default=Path("results/scale-benchmark"))
    ap.add_argument("--cae-epochs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the stores and outputs")
    ap.add_argument("--fresh", action="store_true", help="rewrite the stores and rerun every stage")
    ap.add_argument("--reuse", action="store_true", help="reuse the job table of an N measured before (jobs.csv)")
    ap.add_argument("--d-model", type=int, default=D_MODEL, help="units (4096: the paper's; smaller for a smoke test)")
    args = ap.parse_args()
    per_n = {}
    for n in args.n:
        wd = args.workdir / f"n{n}"
        if args.reuse and (wd / "jobs.csv").exists():
            per_n[n] = pd.read_csv(wd / "jobs.csv")
            print(f"N={n}: reusing {wd / 'jobs.csv'}")
            continue
        path = wd / f"results/{MODEL}/activations/original.zarr"
        meta = wd / "store.json"
        if args.fresh and wd.exists():
            shutil.rmtree(wd)
        if meta.exists() and path.exists():  # a complete store from an interrupted run: keep it
            secs, size = json.loads(meta.read_text())["seconds"], json.loads(meta.read_text())["gb"]
            print(f"N={n}: reusing {path}", flush=True)
        else:
            wd.mkdir(parents=True, exist_ok=True)
            secs = write_store(path, n, args.d_model)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9
            meta.write_text(json.dumps({"seconds": secs, "gb": size}))
            print(f"N={n}: wrote {path} ({size:.2f} GB) in {secs:.0f} s", flush=True)
        wall, table = run_stages(wd, n, args.cae_epochs, args.d_model)
        print(f"N={n}: analysis stages {wall:.0f} s wall", flush=True)
        per_n[n] = table.assign(n=n, wall_total_s=wall, store_write_s=secs, store_gb=size)
        per_n[n].to_csv(wd / "jobs.csv", index=False)
        if not args.keep:
            shutil.rmtree(path)
            meta.unlink()
    rows = []
    ns = sorted(per_n)
    for rule in ANALYSIS_RULES:
        rec: dict[str, object] = {"stage": rule}
        for n in ns:
            g = per_n[n][per_n[n]["rule"] == rule]
            rec["jobs"] = len(g)
            rec[f"wall_s N={n}"] = round(float(g["seconds"].sum()), 1)
            rec[f"peak_rss_mb N={n}"] = round(float(g["peak_rss_mb"].max())) if g["peak_rss_mb"].notna().any() else None
            rec[f"mem_mb N={n}"] = int(g["mem_mb"].max())
        # projection to N=100k: linear in N through the two largest N (time and peak RSS)
        t = [float(per_n[n][per_n[n]["rule"] == rule]["seconds"].sum()) for n in ns]
        r = [float(per_n[n][per_n[n]["rule"] == rule]["peak_rss_mb"].max()) for n in ns]
        if len(ns) > 1 and r[-1] == r[-1]:
            (n1, n2), (t1, t2), (r1, r2) = ns[-2:], t[-2:], r[-2:]
            rec["wall_s N=100k (proj.)"] = round(t2 + max(0.0, (t2 - t1) / (n2 - n1)) * (100_000 - n2))
            rec["peak_rss_mb N=100k (proj.)"] = round(r2 + max(0.0, (r2 - r1) / (n2 - n1)) * (100_000 - n2))
        else:
            rec["wall_s N=100k (proj.)"] = round(t[-1] * 100_000 / ns[-1])
            rec["peak_rss_mb N=100k (proj.)"] = None
        rows.append(rec)
    summary = pd.DataFrame(rows)
    print(summary.to_markdown(index=False))
    bad = []
    for n, t in per_n.items():
        over = t[(t["peak_rss_mb"] > t["mem_mb"]) | (t["peak_rss_mb"] > LIMIT_MB)]
        if len(over):
            bad.append(f"N={n}:\n{over.to_string(index=False)}")
    if bad:
        print("jobs over their request or over 8 GB:\n" + "\n".join(bad))
        return 1
    print(f"every job within its mem_mb request and under {LIMIT_MB} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
