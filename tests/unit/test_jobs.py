"""What a config runs and what each job costs, asked directly of transformer_dynamics.jobs
(no snakemake -n): the fan-out, the views, the memory requests, the config checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from transformer_dynamics import jobs

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def filled(*files, **over):
    """config.yaml (+ files) with the schema's defaults, as the workflow sees it."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for f in files:
        for k, v in yaml.safe_load((REPO / f).read_text()).items():
            cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    cfg.update(over)
    validate(cfg, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    return cfg


def test_default_fan_out_and_views():
    plan = jobs.Plan(filled(), dims={"smollm2-135m": (30, 576)})
    assert plan.unit_blocks("smollm2-135m") == [f"{b:03d}" for b in range(9)]
    assert plan.unit_range("smollm2-135m", "008") == (512, 576)
    assert plan.shards() == ["000"] and plan.shard_rows("000") == (0, 1000)
    assert plan.stores == ["activations"] and plan.view_spec("") is None
    assert plan.all_targets()[:2] == ["results/findings.md", "results/comparison/depth_profiles.png"]


def test_position_views_open_buckets_with_the_cap_and_seed():
    plan = jobs.Plan(filled("configs/positions.yaml"), dims={"smollm2-135m": (30, 576)})
    assert plan.stores == ["activations", "positions"]
    assert plan.store_positions("positions") == "sample:16" and plan.store_positions("activations") == "last"
    assert plan.row_chunk("positions") == 1024 and plan.row_chunk("activations") == 100
    assert plan.view_spec("positions/2-3/") == {"bucket": "2-3", "cap": 1000, "seed": 0}
    assert plan.n_components("smollm2-135m", "positions/all/") == 576  # positions.n_components: all
    assert plan.n_components("smollm2-135m", "") == 100
    assert jobs.bucket_views(["all", "last"]) == ["positions/all/", "positions/last/"]


def test_memory_at_the_paper_shape_stays_within_8_gb():
    """Llama 3.1 8B (32 layers, 4096 units), N = 10,000: a unit-block job's float64 slab is
    10,000 x 64 x 64 x 8 B = 328 MB; the request stays under 8 GB, and a bucket view with a
    larger cap asks for more."""
    cfg = filled(n_samples=10_000)
    plan = jobs.Plan(cfg, dims={"m": (32, 4096)})
    assert len(plan.unit_blocks("m")) == 64
    assert 4000 < plan.block_mem_mb("m") < 8000 and plan.rotation_block_mem_mb("m") < 8000
    cfg2 = copy.deepcopy(cfg)
    cfg2["positions"]["max_tokens_per_bucket"] = 20_000
    assert jobs.Plan(cfg2, dims={"m": (32, 4096)}).block_mem_mb("m", "positions/all/") > plan.block_mem_mb("m")
    assert plan.pca_mem_mb("m") == 1500 + cfg["pca"]["memory_mb"] + int(3 * 8 * 4096**2 / 1e6)


def test_config_checks_name_the_key_and_the_fix():
    cfg = filled()
    cfg["extraction"]["shard_size"] = 150
    with pytest.raises(ValueError, match=r"^extraction.shard_size \(150\) must be a multiple of extraction.sample_chunk"):
        jobs.check_config(cfg)
    cfg = filled()
    cfg["autoencoder"]["split"] = [0.5, 0.2, 0.2]
    with pytest.raises(ValueError, match=r"autoencoder.split .* sum to 0.9"):
        jobs.check_config(cfg)
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["n_sample"] = 100
    assert jobs.config_problems(raw, SCHEMA) == ["n_sample: unknown key (value 100). Did you mean n_samples?"]


@pytest.mark.parametrize("results, allowed, ok", [("results", False, True), ("runs/a/../b", False, True),
                                                   ("../elsewhere", False, False), ("/tmp/elsewhere", False, False),
                                                   ("../elsewhere", True, True)])
def test_results_dir_outside_the_working_directory_needs_saying(tmp_path, monkeypatch, results, allowed, ok):
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["results_dir"] = results
    if allowed:
        raw["allow_results_outside_workdir"] = True
    problems = jobs.config_problems(raw, SCHEMA)
    assert problems == ([] if ok else [
        f"results_dir: {results!r} is outside the working directory {tmp_path} (the workflow deletes and replaces "
        "folders under it). Use a folder inside it, or set allow_results_outside_workdir: true if that folder "
        "belongs to this run."]), problems


def test_estimate_counts_the_position_views():
    base = jobs.estimate_runtime(30, 576, 1000)
    pos = jobs.estimate_runtime(30, 576, 1000, position_buckets=8)
    assert pos["position buckets"] > 0 and pos["total"] > base["total"] * 1.5


def test_a_local_corpus_that_is_not_there_stops_at_parse_time(tmp_path, monkeypatch):
    """After a finished run, a corpus path that no longer exists must not reuse the old
    filtered corpus: the config check says so on its first line."""
    monkeypatch.chdir(tmp_path)
    cfg = filled()
    cfg["corpus"]["source"] = "data/gone.txt"
    with pytest.raises(ValueError, match=r"^corpus.source: 'data/gone.txt' is not an existing file"):
        jobs.check_config(cfg)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.csv").write_text("a,b\n")
    cfg["corpus"]["source"] = "data/corpus.csv"
    with pytest.raises(ValueError, match=r"^corpus.source: 'data/corpus.csv' is a .csv file"):
        jobs.check_config(cfg)
    (tmp_path / "data" / "gone.txt").write_text("\n".join(f"text {i} " + "x" * 150 for i in range(3)) + "\n")
    cfg["corpus"]["source"] = "data/gone.txt"
    with pytest.raises(ValueError, match=r"^only 3 texts pass the length filter, but n_samples=1000"):
        jobs.check_config(cfg)
    cfg["n_samples"] = 3
    jobs.check_config(cfg)
    assert jobs.Plan(cfg, dims={"smollm2-135m": (30, 576)}).corpus_files() == ["data/gone.txt"]
    for named in ("wiki-offline", "wikitext-2-raw-v1"):
        cfg["corpus"]["source"] = named
        jobs.check_config(cfg)


def test_job_labels_read_well_for_every_view():
    from types import SimpleNamespace

    from transformer_dynamics.rulelog import job_label

    def job(**wc):
        return SimpleNamespace(rule="unit_block_stats", wildcards=wc)

    assert job_label(job(model="m", view="", condition="original", block="003")) == "unit_block_stats m/original/003"
    assert job_label(job(model="m", view="positions/2-3/", condition="original", block="003")) == \
        "unit_block_stats m/positions/2-3/original/003"


def test_the_estimate_scales_with_the_load_already_on_the_machine(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(jobs, "busy_cpus", lambda seconds=0.5: 0.1)
    assert jobs.busy_factor(2) == (1.0, 0.1, 2)
    monkeypatch.setattr(jobs, "busy_cpus", lambda seconds=0.5: 2.0)
    assert jobs.busy_factor(2) == (2.0, 2.0, 2)  # 4 runnable threads on 2 CPUs
    plan = jobs.Plan(filled(), dims={"smollm2-135m": (30, 576)})
    busy = plan.runtime_estimate_message(2)
    monkeypatch.setattr(jobs, "busy_cpus", lambda seconds=0.5: 0.0)
    idle = plan.runtime_estimate_message(2)
    assert "busy machine (2.0 of 2 CPUs busy with other work: times x2.0)" in busy and "2 idle cores" in idle


def test_busy_cpus_sees_a_busy_loop_now():
    import multiprocessing as mp
    import os

    assert 0 <= jobs.busy_cpus(0.3) <= (os.cpu_count() or 1) + 0.01
    stop = mp.Event()
    p = mp.Process(target=_spin, args=(stop,))
    p.start()
    try:
        assert jobs.busy_cpus(0.5) >= 0.7  # one CPU kept busy by the spinning process
    finally:
        stop.set()
        p.join()


def _spin(stop):
    while not stop.is_set():
        pass
