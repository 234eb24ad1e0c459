"""The real Snakefile end to end on a tiny config (a local tiny model, the embedded corpus)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from workflow_utils import first_line, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.workflow]


def test_workflow_runs_end_to_end_and_is_then_up_to_date(finished_run):
    wd = finished_run
    for cond in ("original", "shuffled"):
        ds = xr.open_zarr(wd / f"results/tiny/activations/{cond}.zarr")
        assert ds.rs.shape == (24, 8, 48)
        assert np.isfinite(ds.rs.values).all()
        assert ds.attrs["condition"] == cond
        assert ds.attrs["corpus"]["source"] == "wiki-offline"
    o = xr.open_zarr(wd / "results/tiny/activations/original.zarr")
    s = xr.open_zarr(wd / "results/tiny/activations/shuffled.zarr")
    assert (o["sample"].values == s["sample"].values).all()
    assert (o.n_tokens.values == s.n_tokens.values).all()
    # same first token (BOS), same multiset of tokens, different order
    to, ts = o.token_ids.values, s.token_ids.values
    assert (to[:, 0] == ts[:, 0]).all()
    assert all(sorted(a) == sorted(b) for a, b in zip(to, ts))
    dry = snakemake(wd, "-n", "--cores", "2")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    for fig in ("fig1", "fig2", "fig3", "fig4", "perturbation_kinds"):
        for cond in ("original", "shuffled"):
            assert (wd / f"results/tiny/figures/{fig}_{cond}.png").stat().st_size > 10_000


def test_schema_errors_name_the_key_value_and_a_suggestion_first(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir)
    cfg["analysis"]["unit_blok"] = 3
    cfg["n_sample"] = 100
    cfg["models"]["tiny"]["dtype"] = "float23"
    write_config(tmp_path, cfg)
    res = snakemake(tmp_path, "-n", check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "analysis.unit_blok: unknown key (value 3). Did you mean analysis.unit_block?" in out
    assert "n_sample: unknown key (value 100). Did you mean n_samples?" in out
    assert "models.tiny.dtype: 'float23' is not one of float32, bfloat16, float16. Did you mean float32?" in out
    # short: no dump of the schema or the config
    assert "$schema" not in out and "Failed validating" not in out and len(out.splitlines()) < 20, out
    cfg = tiny_config(tiny_model_dir, n_samples="many")
    write_config(tmp_path, cfg)
    res = snakemake(tmp_path, "-n", check=False)
    assert res.returncode != 0 and "n_samples: 'many' is not of type 'integer'" in res.stdout + res.stderr


def test_too_few_texts_is_a_clear_error(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir, corpus={"source": "wiki-offline", "min_chars": 100, "max_chars": 102})
    write_config(tmp_path, cfg)
    res = snakemake(tmp_path, "--cores", "1", "results/corpus/samples.parquet", check=False)
    # refused before the DAG is built: the message is line 1, no estimate, no traceback, no job
    assert res.returncode != 0
    first = first_line(res)
    assert "texts pass the length filter" in first and "n_samples=24" in first, first
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "estimate" not in out.lower() and "message: None" not in out
    assert not (tmp_path / "results").exists()


def test_findings_comparison_and_report(finished_run):
    import json

    wd = finished_run
    f = json.loads((wd / "results/tiny/findings.json").read_text())
    keys = [x["key"] for x in f["findings"]]
    assert {"F1a", "F1b", "F1c", "F2a", "F3", "F4a", "F4b", "F5a", "F5b", "F5c"} <= set(keys)
    assert all(x["verdict"] in {"holds", "does not hold", "inconclusive"} for x in f["findings"])
    md = (wd / "results/findings.md").read_text()
    assert "| F1a" in md and "tiny" in md
    assert (wd / "results/comparison/depth_profiles.png").stat().st_size > 10_000
    snakemake(wd, "--report", "results/report.html")
    html = (wd / "results/report.html").read_text(errors="ignore")
    assert len(html) > 100_000 and "fig1_original.png" in html and "findings" in html


def test_bad_values_stop_before_the_dag_runs(tmp_path, tiny_model_dir):
    cases = [
        (dict(autoencoder={"split": [0.7, 0.2, 0.2]}), r"autoencoder.split [0.7, 0.2, 0.2] must be three positive fractions summing to 1"),
        (dict(models={"tiny": {"source": str(tiny_model_dir), "device": "cpu", "d_model": 100}}),
         "models.tiny.d_model: 100, but model"),
        (dict(models={"tiny": {"source": str(tmp_path / "no-model"), "device": "cpu"}}),
         f"directory {tmp_path / 'no-model'} does not exist"),
        (dict(corpus={"source": "texts/gone.txt"}), "corpus.source: 'texts/gone.txt' is not an existing file"),
    ]
    for over, message in cases:
        write_config(tmp_path, tiny_config(tiny_model_dir, **over))
        res = snakemake(tmp_path, "-n", "--cores", "1", check=False)
        assert res.returncode != 0 and message in res.stdout + res.stderr, (over, res.stderr[-2000:])
        assert not (tmp_path / "results").exists()


def test_terminal_shows_an_estimate_and_progress_with_eta(tmp_path, tiny_model_dir):
    """What a user sees in the terminal: the onstart estimate, then per-job progress lines."""
    cfg = tiny_config(tiny_model_dir, conditions=["original"], n_samples=32,
                      extraction={"shard_size": 32, "sample_chunk": 8, "unit_chunk": 16})
    write_config(tmp_path, cfg)
    res = snakemake(tmp_path, "--cores", "1", "results/tiny/activations/original.zarr")
    out = res.stdout + res.stderr
    assert re.search(r"Estimated time from scratch with 1 (idle cores|cores on a busy machine \()", out)
    assert "  tiny: ~" in out, out[:3000]
    assert "results/logs/" in out
    first = "[extract_shard tiny/activations/original/000] chunk 1/4 (25%)"
    assert first in out and "ETA" in out.split(first, 1)[1].splitlines()[0], out[-3000:]
    assert "[extract_shard tiny/activations/original/000] chunk 4/4 (100%)" in out
    # the full log still has every chunk
    log = (tmp_path / "results/logs/tiny/activations/extract/original/000.log").read_text()
    assert log.count("tok/s") == 4 and "1 threads" in log
    # the estimate counts an extraction only where the store is missing or of another config
    res = snakemake(tmp_path, "--cores", "1", "results/tiny/stats/original/transitions.parquet")
    assert "extraction of 0 condition(s)" in res.stderr and "tok/s measured in an earlier run" in res.stderr, res.stderr[:3000]
    write_config(tmp_path, {**cfg, "n_samples": 24, "extraction": {**cfg["extraction"], "shard_size": 24}})
    res = snakemake(tmp_path, "--cores", "1", "results/tiny/tokens/original.parquet")
    assert "extraction of 1 condition(s)" in res.stderr, res.stderr[:3000]
