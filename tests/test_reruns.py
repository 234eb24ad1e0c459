"""Incremental reruns: a change re-runs exactly the steps it affects (params, input, code)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml
import zarr

from workflow_utils import REPO, SNAKEMAKE, planned_jobs, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.workflow]


@contextlib.contextmanager
def edited_config(wd, change):
    """The workdir's config with ``change`` applied, restored afterwards."""
    path = wd / "config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    change(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


def with_config(wd, change):
    """Dry-run plan after applying ``change`` to the workdir's config."""
    with edited_config(wd, change):
        return planned_jobs(wd)


def test_plot_option_reruns_only_figures(finished_run):
    jobs = with_config(finished_run, lambda c: c.setdefault("figures", {}).update(dpi=99))
    assert jobs and set(jobs) <= {"figure1", "figure2", "figure3", "figure4", "figure_perturbation_kinds",
                                  "compare_models", "all"}
    jobs = with_config(finished_run, lambda c: c["perturbations"].update(arrow_steps=5))
    assert set(jobs) == {"figure4", "all"}


def test_sample_count_and_bounds_rerun_everything_from_the_filter(finished_run):
    for change in (lambda c: c.update(n_samples=20), lambda c: c["corpus"].update(max_chars=450)):
        jobs = with_config(finished_run, change)
        assert jobs["filter_corpus"] == 1 and jobs["tokenize"] == 1
        assert jobs["extract_shard"] == 4 and jobs["unit_block_stats"] == 6 and jobs["train_autoencoder"] == 2


def test_analysis_option_reruns_only_its_stage(finished_run):
    jobs = with_config(finished_run, lambda c: c["rotations"].update(n_shuffles=60))
    # ... and the cross-model outputs that read the rotation tables
    assert set(jobs) == {"rotation_block", "gather_rotations", "figure2", "findings", "findings_table",
                         "compare_models", "all"}
    assert jobs["rotation_block"] == 6


def test_adding_a_model_leaves_the_first_untouched(finished_run, tiny_model_dir):
    def add(c):
        c["models"]["tiny2"] = dict(c["models"]["tiny"])

    res_before = {p: p.stat().st_mtime_ns for p in (finished_run / "results/tiny").rglob("*") if p.is_file()}
    with edited_config(finished_run, add):
        out = snakemake(finished_run, "-n", "--cores", "2")
    text = out.stdout + out.stderr
    planned = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("output:")]
    # only the new model's jobs and the cross-model tables (findings, comparison) are planned
    assert planned and all("results/tiny/" not in o and "results/corpus" not in o for o in planned), planned
    assert any("results/tiny2/" in o for o in planned)
    assert res_before == {p: p.stat().st_mtime_ns for p in (finished_run / "results/tiny").rglob("*") if p.is_file()}


def test_deleting_one_block_reruns_only_that_block(finished_run):
    rel = "results/tiny/stats/original/blocks/001.units.parquet"
    before = (finished_run / rel).read_bytes()
    (finished_run / rel).unlink()
    # Snakemake does not rebuild an intermediate file whose consumers are up to date ...
    assert planned_jobs(finished_run) == {}
    # ... asking for it runs that one block job ...
    assert planned_jobs(finished_run, rel) == {"unit_block_stats": 1}
    snakemake(finished_run, "--cores", "1", rel)
    # ... which rewrites the same bytes (deterministic), so Snakemake's checksum check sees
    # that the gather's input did not change and nothing downstream re-runs
    assert (finished_run / rel).read_bytes() == before
    assert planned_jobs(finished_run) == {}


def test_interrupted_extraction_resumes_with_rerun_incomplete(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, conditions=["original"], n_samples=1600,
                      extraction={"shard_size": 1600, "sample_chunk": 8, "unit_chunk": 16, "threads": 1})
    write_config(tmp_path, cfg)
    target = "results/tiny/activations/original.zarr"
    partial = tmp_path / "results/tiny/activations/shards/original/000.zarr.partial"
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                       str(tmp_path / "config.yaml"), "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    done = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            if (partial / "chunk_done").exists():
                try:
                    done = int(np.sum(zarr.open_group(str(partial), mode="r")["chunk_done"][:]))
                except Exception:
                    done = 0
                if done >= 3:
                    break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 3 <= done < 200, f"could not interrupt mid-way (chunks done: {done})"
    # what a user does after a killed run: remove the stale lock, then rerun the incomplete job
    snakemake(tmp_path, "--unlock", target)
    snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", target)
    log = (tmp_path / "results/logs/tiny/extract/original/000.log").read_text()
    left = int(log.split("resuming", 1)[1].split(":", 1)[1].split("chunks left")[0])
    assert left <= 200 - done
    assert '"chunks_computed": %d.0' % left in log
    g = zarr.open_group(str(tmp_path / target), mode="r")
    assert g["chunk_done"][:].all() and np.isfinite(g["rs"][:]).all()


@pytest.mark.parametrize("target_of_signal", ["snakemake alone", "process group"])
def test_ctrl_c_never_recomputes_finished_chunks(tmp_path, tiny_model_dir, target_of_signal):
    """SIGINT to Snakemake alone (the job runs on to its end, Snakemake marks it incomplete)
    or to the whole process group (the job stops mid-way): the README's resume computes only
    the chunks that were not finished, and none when the shard had completed."""
    n, chunk = 800, 8
    cfg = tiny_config(tiny_model_dir, conditions=["original"], n_samples=n,
                      extraction={"shard_size": n, "sample_chunk": chunk, "unit_chunk": 16, "threads": 1})
    write_config(tmp_path, cfg)
    target = "results/tiny/activations/original.zarr"
    partial = tmp_path / "results/tiny/activations/shards/original/000.zarr.partial"
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                       str(tmp_path / "config.yaml"), "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, done = time.time() + 300, 0
    try:
        while time.time() < deadline and proc.poll() is None and done < 3:
            with contextlib.suppress(Exception):
                done = int(np.sum(zarr.open_group(str(partial), mode="r")["chunk_done"][:]))
            time.sleep(0.05)
        if target_of_signal == "snakemake alone":
            os.kill(proc.pid, signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0 and 3 <= done < n // chunk, f"could not interrupt mid-way (chunks done: {done})"
    log_path = tmp_path / "results/logs/tiny/extract/original/000.log"
    first = log_path.read_text()
    snakemake(tmp_path, "--unlock", target)
    snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", target)
    log = log_path.read_text()
    computed = int(float(log.split('"chunks_computed": ')[1].split("}")[0]))
    if target_of_signal == "snakemake alone":
        # the job was not signalled: it finished all chunks, and the rerun computes none
        assert '"chunks_computed": %d.0' % (n // chunk) in first
        assert "resuming" in log and computed == 0, log[-2000:]
    else:
        assert "resuming" in log and computed <= n // chunk - done, log[-2000:]
    g = zarr.open_group(str(tmp_path / target), mode="r")
    assert g["chunk_done"][:].all() and np.isfinite(g["rs"][:]).all()
    assert not partial.exists()  # the gather removed the resume twin
