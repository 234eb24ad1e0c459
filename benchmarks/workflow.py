"""The whole default workflow, timed: per rule, the total and the critical path.

    python benchmarks/workflow.py [--workdir DIR] [--keep] [--cores all] [-- SNAKEMAKE ARGS ...]

Runs ``snakemake --cores all`` (the README's command) with the repository's Snakefile and
config.yaml from a clean results/ in a temporary directory (the embedded model and corpus
are installed packages, so nothing is downloaded), then prints, from the jobs' Snakemake
benchmark files:

- per rule: jobs, summed wall seconds, share of the summed job time, largest peak RSS;
- per rule, the summed CPU seconds (Snakemake's ``cpu_time``: user + system of the job's
  processes, as last polled, so a lower bound; "NA" for a job shorter than the first poll),
  and for the run their sum over the cores: a floor of the wall time no scheduler could beat
  on these cores with the same work (a job waiting for a core adds wall, not CPU, seconds);
- the total wall time of the run, the summed job time and its lower bound on the cores used;
- the critical path: the chain of dependent jobs with the largest summed wall time (edges:
  an output of one job is an input of the next, from ``snakemake -n --forceall`` of the
  finished run), i.e. the wall time no number of cores could beat.

``--keep`` keeps the directory (its store can feed ``benchmarks/mi.py --store``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from job_resources import Job, job_table, planned_jobs  # noqa: E402


def dag_jobs(workdir: Path, args: list[str], repo: Path = REPO) -> list[Job]:
    """Every job of the workflow with its inputs, outputs and benchmark file (dry run)."""
    return planned_jobs(["--directory", str(workdir), *args], workdir, repo)


def measure(jobs: list[Job], workdir: Path) -> pd.DataFrame:
    """One row per job: rule, wildcards, seconds and peak RSS from its benchmark file."""
    return job_table(jobs, workdir).assign(wildcards=[j.wildcards for j in jobs])


def critical_path(jobs: list[Job], seconds: list[float]) -> tuple[float, list[int]]:
    """Longest chain of dependent jobs by summed seconds (jobs are a DAG)."""
    producer = {o: i for i, j in enumerate(jobs) for o in j.outputs}
    parents = [sorted({producer[p] for p in j.inputs if p in producer and producer[p] != i}) for i, j in enumerate(jobs)]
    best: dict[int, tuple[float, list[int]]] = {}

    def longest(i: int) -> tuple[float, list[int]]:
        if i not in best:
            s = seconds[i] if seconds[i] == seconds[i] else 0.0
            prev = max((longest(p) for p in parents[i]), key=lambda t: t[0], default=(0.0, []))
            best[i] = (prev[0] + s, prev[1] + [i])
        return best[i]

    sys.setrecursionlimit(max(10000, 4 * len(jobs)))
    return max((longest(i) for i in range(len(jobs))), key=lambda t: t[0])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--cores", default="all")
    ap.add_argument("--repo", type=Path, default=REPO,
                    help="checkout whose Snakefile, config.yaml and package run (a baseline: set PYTHONPATH=<repo>/src)")
    ap.add_argument("snakemake_args", nargs="*", help="after --: extra snakemake arguments (e.g. --configfile)")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="td-workflow-"))
    if (workdir / "results").exists():
        shutil.rmtree(workdir / "results")
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.repo / "config.yaml", workdir / "config.yaml")
    extra = list(args.snakemake_args)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(args.repo / "Snakefile"), "--directory", str(workdir),
           "--cores", args.cores, *extra]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        print(res.stderr[-5000:])
        raise SystemExit(f"the workflow failed after {wall:.0f} s (directory kept: {workdir})")
    jobs = dag_jobs(workdir, extra, args.repo)
    table = measure(jobs, workdir)
    total_job = float(table["seconds"].sum())
    per_rule = (table.groupby("rule", sort=False)
                .agg(jobs=("rule", "size"), wall_s=("seconds", "sum"), cpu_s=("cpu_s", lambda c: c.sum(min_count=1)),
                     peak_rss_mb=("peak_rss_mb", "max"))
                .sort_values("wall_s", ascending=False))
    per_rule["share"] = (per_rule["wall_s"] / total_job).map(lambda x: f"{x:.0%}")
    per_rule["wall_s"] = per_rule["wall_s"].round(1)
    per_rule["cpu_s"] = per_rule["cpu_s"].round(1)
    per_rule["peak_rss_mb"] = per_rule["peak_rss_mb"].round(0)
    print(per_rule.reset_index().to_markdown(index=False))
    cores = int(re.search(r"Provided cores: (\d+)", res.stderr + res.stdout).group(1)) if "Provided cores" in res.stderr + res.stdout else None
    length, chain = critical_path(jobs, table["seconds"].tolist())
    print(f"\nwall time of the run: {wall:.0f} s ({wall / 60:.1f} min); {len(jobs)} jobs; summed job time "
          f"{total_job:.0f} s" + (f", / {cores} cores = {total_job / cores:.0f} s" if cores else ""))
    total_cpu = float(table["cpu_s"].sum())
    no_cpu = table[table["seconds"].notna() & table["cpu_s"].isna()]["rule"].tolist()
    print(f"summed CPU time {total_cpu:.0f} s" + (f", / {cores} cores = {total_cpu / cores:.0f} s: a floor of the wall "
                                                  "time for this work on these cores" if cores else "")
          + " (a lower bound: Snakemake polls a job's CPU time, so the last seconds of a job can be missed"
          + (f"; jobs without a CPU time: {no_cpu}" if no_cpu else "") + ")")
    print(f"critical path: {length:.0f} s: " + " -> ".join(
        f"{jobs[i].rule}({table['seconds'][i]:.0f} s)" for i in chain))
    unmeasured = table[table["seconds"].isna()]["rule"].unique().tolist()
    if unmeasured:
        print(f"rules without a benchmark file: {unmeasured}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir)
    else:
        print(f"kept {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
