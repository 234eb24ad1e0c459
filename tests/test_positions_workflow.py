"""The position-resolved workflow end to end on a tiny model (issue 15): the position store,
the analyses per bucket, the findings by position and their figure; the 'last' bucket
reproduces the last-token workflow's tables exactly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from workflow_utils import planned_jobs, snakemake, tiny_config, write_config


@pytest.fixture(scope="module")
def positions_run(tmp_path_factory, tiny_model_dir, finished_run):
    """The finished last-token run (a copy) with positions turned on: what a user does after
    a first run. Only the position jobs and the cross-model outputs run; the last-token
    stores and analyses are kept."""
    wd = tmp_path_factory.mktemp("positions")
    shutil.copytree(finished_run, wd, symlinks=True, dirs_exist_ok=True)
    cfg = tiny_config(tiny_model_dir, extraction={"shard_size": 16, "sample_chunk": 8, "unit_chunk": 16,
                                                  "positions": "sample:4", "token_chunk": 20},
                      positions={"min_tokens": 8})
    write_config(wd, cfg)
    jobs = planned_jobs(wd)
    kept = {"filter_corpus", "tokenize", "extract_shard", "gather_activations", "unit_block_stats",
            "gather_unit_stats", "vector_stats", "rotation_block", "gather_rotations", "train_autoencoder",
            "fit_pca", "perturb"}
    assert jobs.get("extract_positions") == 2, jobs
    assert not kept & set(jobs), f"turning positions on re-ran last-token jobs: {jobs}"
    snakemake(wd, "--cores", "2")
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


def test_last_bucket_reproduces_the_last_token_workflow(positions_run):
    """Every last token, same library code, same unit blocks and seeds: the same numbers, up to
    float32 rounding of the capture (the two stores batch the texts differently)."""
    r = positions_run / "results" / "tiny"
    status = json.loads((r / "positions" / "original" / "last" / "status.json").read_text())
    assert status["analysed"] and status["n_tokens"] == 24
    b = r / "positions" / "original" / "last"
    units = pd.read_parquet(b / "units.parquet")
    ref = pd.read_parquet(r / "unit_stats" / "original" / "units.parquet") if (r / "unit_stats").exists() else None
    if ref is None:
        ref = pd.read_parquet(next(r.rglob("original/units.parquet")))
    pd.testing.assert_frame_equal(units.reset_index(drop=True), ref.reset_index(drop=True), rtol=1e-6, atol=1e-9)
    rot = pd.read_parquet(b / "rotations.parquet")
    rref = pd.read_parquet(next(r.rglob("rotations/original.parquet")) if list(r.rglob("rotations/original.parquet"))
                           else next(r.rglob("rotations/original/table.parquet")))
    np.testing.assert_allclose(rot["abs_R"].to_numpy(), rref["abs_R"].to_numpy(), rtol=1e-6)
    # a null R within rounding of the observed one may fall on the other side: one permutation of 50
    np.testing.assert_allclose(rot["p_value"].to_numpy(), rref["p_value"].to_numpy(), rtol=0, atol=1.01 / 51)
    assert (rot["p_value"] != rref["p_value"]).sum() <= 2
    npcs = pd.read_parquet(b / "n_pcs.parquet")
    nref = pd.read_parquet(r / "pca" / "original" / "n_pcs.parquet")
    pd.testing.assert_frame_equal(npcs, nref)


def test_editing_a_position_option_reruns_only_position_jobs(positions_run):
    cfg_path = positions_run / "config.yaml"
    import yaml

    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["positions"] = {"min_tokens": 9}
    write_config(positions_run, cfg)
    try:
        jobs = planned_jobs(positions_run)
    finally:
        cfg["positions"] = {"min_tokens": 8}
        write_config(positions_run, cfg)
    assert jobs.get("position_bucket", 0) > 0
    assert not {"extract_shard", "extract_positions", "unit_block_stats", "rotation_block", "train_autoencoder"} & set(jobs)
