"""configs/paper.yaml, the paper's own setting, offline: a local model directory written by
`save_pretrained` and a local WikiText-format parquet file stand in for the hub's model and
dataset, and `device: cuda` becomes `cpu` (no GPU in the tests); every other line of the file is
what users run. The whole DAG is planned, and the stores are extracted: the corpus goes through
`datasets`' parquet builder (the hub serves WikiText as parquet files with a `text` column),
the model through the hub-id code path (`from_pretrained` of a directory)."""

from __future__ import annotations

import difflib
import json
import re

import numpy as np
import pandas as pd
import pytest

from workflow_utils import REPO, planned_jobs, snakemake

pytestmark = [pytest.mark.workflow]

HUB_MODEL, HUB_CORPUS = "source: meta-llama/Llama-3.1-8B", "source: wikitext-2-raw-v1"


def wikitext_parquet(path):
    """Rows as in the hub's wikitext-2-raw-v1 parquet: ' = Title = \\n' headings, ' text \\n'
    paragraphs and empty rows (here: the embedded corpus's paragraphs)."""
    from transformer_dynamics.corpus import load_wiki_offline

    rows = []
    for i, p in enumerate(load_wiki_offline().texts[:3000]):
        rows += ["", f" = Article {i} = \n", "", f" {p.strip()} \n"]
    pd.DataFrame({"text": rows}).to_parquet(path, index=False)
    return path


def test_the_paper_config_runs_offline_with_local_stand_ins(tmp_path, tiny_model_dir):
    text = (REPO / "configs" / "paper.yaml").read_text()
    assert HUB_MODEL in text and HUB_CORPUS in text and "device: cuda" in text
    corpus = wikitext_parquet(tmp_path / "wikitext-2-raw-v1-train.parquet")
    local = (text.replace(HUB_MODEL, f"source: {tiny_model_dir}").replace(HUB_CORPUS, f"source: {corpus}")
             )
    local = re.sub(r"^(\s+device:) cuda", r"\1 cpu", local, flags=re.M)
    changed = [line for line in difflib.ndiff(text.splitlines(), local.splitlines()) if line.startswith("+ ")]
    devices = len(re.findall(r"^\s+device: cuda", text, flags=re.M))  # the model, PCA and the CAE
    assert devices == 3 and len(changed) == 2 + devices, changed  # the two sources and the devices, nothing else
    (tmp_path / "config.yaml").write_text(local)
    opts = ("--replace-workflow-config",)
    jobs = planned_jobs(tmp_path, *opts)
    # N = 1000 in shards of 500, both conditions; 48 units = one unit block of 64
    assert jobs["extract_shard"] == 4 and jobs["gather_activations"] == 2 and jobs["unit_block_stats"] == 2, jobs
    assert jobs["findings"] == 1 and jobs["perturb"] == 2 and jobs["train_autoencoder"] == 2, jobs
    stores = [f"results/paper/llama-3.1-8b/activations/{c}.zarr" for c in ("original", "shuffled")]
    snakemake(tmp_path, "--cores", "2", *opts, *stores)
    meta = json.loads((tmp_path / "results/paper/corpus/corpus.json").read_text())
    assert meta["source"] == str(corpus) and meta["n_samples"] == 1000
    from transformer_dynamics import store

    g = store.open_store(tmp_path / stores[0])
    assert g.attrs["rs_dtype"] == "bfloat16" and g.attrs["model_dtype"] == "bfloat16"
    assert g["rs"].shape[:2] == (1000, 8)
    texts = store.text_table(g)["text"]
    assert all(100 < len(t) < 500 and not t.startswith(" ") for t in texts[:50])
    assert np.isfinite(store.read_rs(g, (slice(0, 100),))).all()
