"""The Zarr store: layout, xarray, resume after interruption, NaN guard, shard gather."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

from transformer_dynamics import extraction, store
from transformer_dynamics.capture import NonFiniteActivationError, sublayer_labels
from transformer_dynamics.models import LoadedModel

from conftest import make_tiny_model, random_sequences


def loaded_tiny(arch="llama"):
    m = make_tiny_model(arch, seed=11)
    L = m.config.num_hidden_layers
    return LoadedModel(m, None, {"source": "tiny", "dtype": "float32", "n_layers": L, "d_model": 32})


def run(path, seqs, **kw):
    n = len(seqs)
    return extraction.extract_to_store(
        loaded_tiny(), path, np.arange(n), np.arange(n) * 10, seqs,
        texts=[f"text {i}" for i in range(n)], sample_chunk=4, unit_chunk=8, attrs={"seed": 0}, **kw
    )


def test_store_layout_opens_in_xarray(tmp_path):
    seqs = random_sequences(np.random.default_rng(0), 10)
    run(tmp_path / "s.zarr", seqs)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds.rs.dims == ("sample", "sublayer", "unit")
    assert ds.rs.shape == (10, 6, 32)
    assert list(ds.sublayer.values) == sublayer_labels(3)
    assert list(ds.layer.values) == [0, 0, 1, 1, 2, 2]
    assert list(ds.kind.values) == ["attn", "mlp"] * 3
    assert ds.rs.encoding["chunks"] == (4, 6, 8)
    assert ds.n_tokens.values.tolist() == [len(s) for s in seqs]
    tok = ds.token_ids.values
    for i, s in enumerate(seqs):
        assert tok[i, : len(s)].tolist() == s and (tok[i, len(s):] == -1).all()
    assert ds.attrs["complete"] and ds.attrs["seed"] == 0
    assert np.isfinite(ds.rs.values).all()
    # the work store stays as a hard-linked twin of the published one (no extra space), so a
    # rerun that deletes the output resumes with nothing left to compute (see extraction.publish)
    twin = tmp_path / "s.zarr.partial"
    files = [p.relative_to(tmp_path / "s.zarr") for p in (tmp_path / "s.zarr").rglob("*") if p.is_file()]
    assert files and all(os.path.samefile(tmp_path / "s.zarr" / f, twin / f) for f in files)


def interrupted_run(monkeypatch, path, seqs, exc):
    """Run an extraction that dies with ``exc`` while writing its second chunk."""
    calls = {"n": 0}
    real = store.write_chunk

    def crash_on_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(*a, **k)

    monkeypatch.setattr(store, "write_chunk", crash_on_second)
    with pytest.raises(type(exc)):
        run(path, seqs)
    monkeypatch.setattr(store, "write_chunk", real)


def test_interrupted_extraction_resumes_without_recomputing(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(1), 10)
    clean = tmp_path / "clean.zarr"
    run(clean, seqs)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, KeyboardInterrupt("killed"))
    partial = store.open_store(tmp_path / "r.zarr.partial")
    assert store.pending_chunks(partial) == [1, 2]
    stats = run(tmp_path / "r.zarr", seqs)
    assert stats["chunks_computed"] == 2
    a = store.open_store(tmp_path / "r.zarr")["rs"][:]
    np.testing.assert_array_equal(a, store.open_store(clean)["rs"][:])


def test_changed_inputs_do_not_resume_a_stale_partial_store(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(2), 8)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, RuntimeError("boom"))
    n = len(seqs)
    stats = extraction.extract_to_store(
        loaded_tiny(), tmp_path / "r.zarr", np.arange(n), np.arange(n), seqs, sample_chunk=4,
        unit_chunk=8, attrs={"seed": 1},
    )
    assert stats["chunks_computed"] == 2


def test_nan_activations_stop_with_a_clear_error_and_keep_written_chunks(tmp_path):
    loaded = loaded_tiny()
    layer = loaded.model.model.layers[1]
    seqs = random_sequences(np.random.default_rng(3), 8)
    # poison the last sequence of the second chunk through a hook on layer 1's attention input
    target = len(seqs[6])

    def poison(module, args):
        h = args[0]
        if h.shape[1] == target:
            h = h.clone()
            h[:, -1, 0] = float("nan")
            return (h,)

    handle = layer.input_layernorm.register_forward_pre_hook(poison)
    try:
        with pytest.raises(NonFiniteActivationError, match=r"samples \[.*6.*\] at sublayers \['L01.attn'"):
            extraction.extract_to_store(loaded, tmp_path / "n.zarr", np.arange(8), np.arange(8), seqs,
                                        sample_chunk=4, unit_chunk=8, max_batch=1)
    finally:
        handle.remove()
    partial = store.open_store(tmp_path / "n.zarr.partial")
    assert store.pending_chunks(partial) == [1]
    assert np.isfinite(partial["rs"][0:4]).all()


def test_gathered_shards_equal_one_store(tmp_path):
    seqs = random_sequences(np.random.default_rng(4), 12)
    loaded = loaded_tiny()
    width = max(len(s) for s in seqs)
    one = tmp_path / "one.zarr"
    extraction.extract_to_store(loaded, one, np.arange(12), np.arange(12), seqs, max_positions=width,
                                sample_chunk=4, unit_chunk=8)
    parts = []
    for k, (s0, s1) in enumerate([(0, 8), (8, 12)]):
        p = tmp_path / f"shard{k}.zarr"
        extraction.extract_to_store(loaded, p, np.arange(s0, s1), np.arange(s0, s1), seqs[s0:s1],
                                    max_positions=width, sample_chunk=4, unit_chunk=8)
        parts.append(p)
    extraction.gather_shards(parts, tmp_path / "g.zarr", [0, 8])
    a, b = store.open_store(one), store.open_store(tmp_path / "g.zarr")
    for name in ("rs", "token_ids", "sample", "n_tokens"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    with pytest.raises(ValueError, match="not aligned"):
        store.copy_into(b, store.open_store(parts[1]), 6)


def test_read_units_reads_a_block(tmp_path):
    seqs = random_sequences(np.random.default_rng(5), 6)
    run(tmp_path / "s.zarr", seqs)
    full = store.open_store(tmp_path / "s.zarr")["rs"][:]
    np.testing.assert_array_equal(store.read_units(tmp_path / "s.zarr", 8, 20), full[:, :, 8:20])
