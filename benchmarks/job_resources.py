"""Peak memory of every job against the memory it asks for, per rule.

    python benchmarks/job_resources.py [SNAKEMAKE CONFIG ARGS ...]

e.g. after the paper-scale rehearsal:

    python benchmarks/job_resources.py --configfile configs/paper-scale-rehearsal.yaml --replace-workflow-config

Asks Snakemake (a dry run with ``--forceall``, so nothing runs) for every job's ``mem_mb``
request and benchmark file, reads the peak RSS (``max_rss``) that Snakemake
recorded in each benchmark file of the finished run, and prints one row per rule: jobs,
jobs measured, largest peak RSS, its request, the smallest headroom (request - peak) and
the wall time summed over jobs. Exits 1 when a job's peak RSS exceeded its request.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    rule: str
    benchmark: str | None
    mem_mb: int | None
    wildcards: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _paths(block: str, key: str) -> list[str]:
    m = re.search(rf"^\s+{key}: (.+)$", block, re.M)
    return [p.strip() for p in m.group(1).split(",")] if m else []


def planned_jobs(args: list[str], workdir: Path = REPO, repo: Path = REPO) -> list[Job]:
    """Every job of the workflow with its request, benchmark file, wildcards, inputs and
    outputs, from ``snakemake -n --forceall`` (``repo``: the checkout whose Snakefile runs)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--snakefile", str(repo / "Snakefile"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if res.returncode != 0:
        raise SystemExit(f"snakemake dry run failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    jobs: list[Job] = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:)", res.stdout + res.stderr):
        m = re.match(r"(?:local)?rule (\S+):", block)
        if not m or m.group(1) == "all":
            continue
        bench = _paths(block, "benchmark")
        mem = re.search(r"\bmem_mb=(\d+)", block)
        wc = re.search(r"^\s+wildcards: (.+)$", block, re.M)
        jobs.append(Job(m.group(1), bench[0] if bench else None, int(mem.group(1)) if mem else None,
                        wc.group(1) if wc else "", _paths(block, "input"), _paths(block, "output")))
    return jobs


def job_table(jobs: list[Job], workdir: Path = REPO) -> pd.DataFrame:
    """One row per job: rule, mem_mb, peak RSS (MB), wall seconds and CPU seconds (user +
    system of the job's processes, Snakemake's ``cpu_time``); NaN if unmeasured."""
    rows = []
    for j in jobs:
        rss = secs = cpu = float("nan")
        if j.benchmark and (workdir / j.benchmark).exists():
            b = pd.read_csv(workdir / j.benchmark, sep="\t")
            rss, secs = float(b["max_rss"].iloc[-1]), float(b["s"].iloc[-1])
            cpu = float(b["cpu_time"].iloc[-1]) if "cpu_time" in b else float("nan")
        rows.append({"rule": j.rule, "mem_mb": j.mem_mb, "peak_rss_mb": rss, "seconds": secs, "cpu_s": cpu})
    return pd.DataFrame(rows)


def rule_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, measured jobs, largest peak RSS, request at that job, smallest headroom."""
    t = table.assign(headroom_mb=table["mem_mb"] - table["peak_rss_mb"])
    out = []
    for rule, g in t.groupby("rule", sort=False):
        measured = g.dropna(subset=["peak_rss_mb"])
        worst = measured.loc[measured["peak_rss_mb"].idxmax()] if len(measured) else None
        out.append({
            "rule": rule, "jobs": len(g), "measured": len(measured),
            "peak_rss_mb": None if worst is None else round(worst["peak_rss_mb"]),
            "mem_mb": int(g["mem_mb"].max()) if g["mem_mb"].notna().any() else None,
            "min_headroom_mb": None if worst is None else round(measured["headroom_mb"].min()),
            "wall_s": round(float(measured["seconds"].sum()), 1),
            "within": bool((measured["headroom_mb"] >= 0).all()),
        })
    return pd.DataFrame(out)


def main(argv: list[str]) -> int:
    table = job_table(planned_jobs(argv))
    summary = rule_summary(table)
    print(summary.to_markdown(index=False))
    over = table[table["peak_rss_mb"] > table["mem_mb"]]
    if len(over):
        print(f"\n{len(over)} job(s) used more memory than requested:\n{over.to_string(index=False)}")
        return 1
    print(f"\nall {int(table['peak_rss_mb'].notna().sum())} measured jobs within their mem_mb request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
