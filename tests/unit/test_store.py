"""The Zarr store: layout, xarray, resume after interruption, NaN guard, shard gather."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import xarray as xr

from transformer_dynamics import extraction, store
from transformer_dynamics.capture import NonFiniteActivationError
from transformer_dynamics.sublayers import sublayer_labels
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
        texts=[f"text {i}" for i in range(n)], row_chunk=4, unit_chunk=8, attrs={"seed": 0}, **kw
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
    assert list(ds.hook.values[:3]) == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_pre"]
    assert ds.attrs["layout"] == "last" and ds.attrs["format_version"] == store.FORMAT_VERSION
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
    real = store.RowWriter.add

    def crash_on_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(*a, **k)

    monkeypatch.setattr(store.RowWriter, "add", crash_on_second)
    with pytest.raises(type(exc)):
        run(path, seqs)
    monkeypatch.setattr(store.RowWriter, "add", real)


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


def test_background_writes_give_the_same_store_and_finish_the_write_in_flight(tmp_path, monkeypatch):
    """The GPU path (chunk k written while chunk k+1 is captured), run here on the CPU."""
    seqs = random_sequences(np.random.default_rng(12), 10)
    run(tmp_path / "seq.zarr", seqs, overlap_writes=False)
    run(tmp_path / "bg.zarr", seqs, overlap_writes=True)
    a, b = store.open_store(tmp_path / "seq.zarr"), store.open_store(tmp_path / "bg.zarr")
    for name in ("rs", "token_ids", "n_tokens", "sample", "corpus_index", "text", "chunk_done"):
        np.testing.assert_array_equal(store.checked(a, name)[:], store.checked(b, name)[:], err_msg=name)

    # Ctrl-C while the third chunk is captured: the write of the second, in flight, completes
    real, calls = extraction.capture, {"n": 0}

    def interrupted_capture(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        yield from real(*args, **kw)

    monkeypatch.setattr(extraction, "capture", interrupted_capture)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "i.zarr", seqs, overlap_writes=True)
    partial = store.open_store(tmp_path / "i.zarr.partial")
    assert store.pending_chunks(partial) == [2]
    np.testing.assert_array_equal(store.read_rs(partial, slice(0, 8)), store.read_rs(a, slice(0, 8)))


def test_changed_inputs_do_not_resume_a_stale_partial_store(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(2), 8)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, RuntimeError("boom"))
    n = len(seqs)
    stats = extraction.extract_to_store(
        loaded_tiny(), tmp_path / "r.zarr", np.arange(n), np.arange(n), seqs, row_chunk=4,
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
                                        row_chunk=4, unit_chunk=8, max_batch=1)
    finally:
        handle.remove()
    partial = store.open_store(tmp_path / "n.zarr.partial")
    assert store.pending_chunks(partial) == [1]
    assert np.isfinite(partial["rs"][0:4]).all()


def extract_shards(tmp_path, loaded, seqs, bounds, width, name="shard"):
    """One store per ``(start, stop)`` of ``bounds``, as the extract_shard jobs write them."""
    parts = []
    for k, (s0, s1) in enumerate(bounds):
        p = tmp_path / f"{name}{k}.zarr"
        extraction.extract_to_store(loaded, p, np.arange(s0, s1), np.arange(s0, s1), seqs[s0:s1],
                                    token_width=width, row_chunk=4, unit_chunk=8)
        parts.append(p)
    return parts


def test_gathered_shards_equal_one_store(tmp_path):
    seqs = random_sequences(np.random.default_rng(4), 12)
    loaded = loaded_tiny()
    width = max(len(s) for s in seqs)
    one = tmp_path / "one.zarr"
    extraction.extract_to_store(loaded, one, np.arange(12), np.arange(12), seqs, token_width=width,
                                row_chunk=4, unit_chunk=8)
    extraction.gather_shards(extract_shards(tmp_path, loaded, seqs, [(0, 8), (8, 12)], width), tmp_path / "g.zarr")
    a, b = store.open_store(one), store.open_store(tmp_path / "g.zarr")
    for name in ("rs", "token_ids", "sample", "n_tokens", "corpus_index"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    # shards that do not end on a row chunk of the result (the position store's case) gather
    # through whole chunks of the result; their values are the same captures
    extraction.gather_shards(extract_shards(tmp_path, loaded, seqs, [(0, 6), (6, 12)], width, "odd"), tmp_path / "g2.zarr")
    c = store.open_store(tmp_path / "g2.zarr")
    assert c["rs"].chunks == a["rs"].chunks and store.verify(c)["rs"] == 3 * 4
    np.testing.assert_allclose(c["rs"][:], a["rs"][:], rtol=1e-5, atol=1e-6)
    for name in ("token_ids", "sample", "n_tokens"):
        np.testing.assert_array_equal(a[name][:], c[name][:])


def test_read_units_reads_a_block(tmp_path):
    seqs = random_sequences(np.random.default_rng(5), 6)
    run(tmp_path / "s.zarr", seqs)
    full = store.open_store(tmp_path / "s.zarr")["rs"][:]
    np.testing.assert_array_equal(store.read_units(tmp_path / "s.zarr", 8, 20), full[:, :, 8:20])


# --- integrity: a bad chunk is an error naming the store, array and chunk, never NaN -----------


def chunk_file(path, coords, name="rs"):
    return path / name / "c" / "/".join(map(str, coords))


def damage(path, coords, how):
    f = chunk_file(path, coords)
    data = f.read_bytes()
    if how == "delete":
        f.unlink()
    elif how == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        i = len(data) // 3
        f.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])


@pytest.mark.parametrize("how,match", [("delete", "is missing"), ("truncate", "is corrupted"),
                                       ("flip", "is corrupted")])


def test_every_reader_of_rs_refuses_a_bad_chunk(tmp_path, how, match):
    seqs = random_sequences(np.random.default_rng(6), 10)
    path = tmp_path / "s.zarr"
    run(path, seqs)
    assert store.verify(path)["rs"] == 3 * 4
    damage(path, (1, 0, 2), how)  # samples 4-7, units 16-23
    where = rf"{path}: array 'rs', chunk 1\.0\.2 \(rs/c/1/0/2\) {match}"
    with pytest.raises(store.StoreIntegrityError, match=where):
        store.read_units(path, 16, 24)
    with pytest.raises(store.StoreIntegrityError, match=where):
        list(store.iter_samples(path))
    with pytest.raises(store.StoreIntegrityError, match=where):
        store.read_rs(path, (slice(None), 2, slice(None)))
    with pytest.raises(store.StoreIntegrityError, match=where):
        store.checked(path)[5]
    with pytest.raises(store.StoreIntegrityError, match=where):
        store.verify(path)
    # blocks that do not touch the bad chunk still read, and equal the clean values
    run(tmp_path / "clean.zarr", seqs)
    np.testing.assert_array_equal(store.read_units(path, 0, 16), store.read_units(tmp_path / "clean.zarr", 0, 16))


def test_checksums_are_on_and_every_chunk_is_written(tmp_path):
    seqs = random_sequences(np.random.default_rng(7), 6)
    run(tmp_path / "s.zarr", seqs)
    g = store.open_store(tmp_path / "s.zarr")
    for name, arr in g.arrays():
        assert [type(c).__name__ for c in arr.compressors] == ["ZstdCodec", "Crc32cCodec"], name
    counts = store.verify(g)
    # rs: 2 sample chunks x 4 unit chunks; per-sample arrays: one chunk per sample chunk
    assert counts["rs"] == 2 * 4 and counts["chunk_done"] == 1 and counts["text"] == 2 and counts["sample"] == 2


def test_finalize_refuses_a_store_with_a_corrupted_chunk(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(8), 12)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, KeyboardInterrupt("killed"))
    damage(tmp_path / "r.zarr.partial", (0, 0, 1), "flip")
    with pytest.raises(store.StoreIntegrityError, match=r"chunk 0\.0\.1 .*is corrupted"):
        run(tmp_path / "r.zarr", seqs)
    assert not (tmp_path / "r.zarr").exists()  # never declared complete


def test_gather_refuses_a_damaged_shard(tmp_path):
    seqs = random_sequences(np.random.default_rng(9), 8)
    loaded = loaded_tiny()
    parts = extract_shards(tmp_path, loaded, seqs, [(0, 4), (4, 8)], 20)
    damage(parts[1], (0, 0, 3), "delete")
    with pytest.raises(store.StoreIntegrityError, match=r"shard1.zarr: array 'rs', chunk 0\.0\.3 .*is missing"):
        extraction.gather_shards(parts, tmp_path / "g.zarr")


# --- resume: only a partial store of the very same content is resumed ----------------------


def test_resume_after_the_texts_changed_discards_the_partial_store(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(10), 12)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, KeyboardInterrupt("killed"))
    # the corpus was edited in between: same number of samples, different tokens in the last one
    new = [list(s) for s in seqs]
    new[-1] = new[-1][:-1] + [(new[-1][-1] + 1) % 128 or 3]
    log = io.StringIO()
    stats = run(tmp_path / "r.zarr", new, log=log)
    assert "discarding the partial store" in log.getvalue() and "content_sha256" in log.getvalue()
    assert "resuming" not in log.getvalue()
    assert stats["chunks_computed"] == 3  # everything recomputed
    run(tmp_path / "clean.zarr", new)
    a, b = store.open_store(tmp_path / "r.zarr"), store.open_store(tmp_path / "clean.zarr")
    for name in ("rs", "token_ids", "n_tokens", "text"):
        np.testing.assert_array_equal(a[name][:], b[name][:])


def test_resume_with_other_weights_or_dtype_discards_the_partial_store(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(11), 12)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, KeyboardInterrupt("killed"))
    loaded = loaded_tiny()
    loaded.info["weights_sha256"] = "other"
    log = io.StringIO()
    extraction.extract_to_store(loaded, tmp_path / "r.zarr", np.arange(12), np.arange(12) * 10, seqs,
                                texts=[f"text {i}" for i in range(12)], row_chunk=4, unit_chunk=8,
                                attrs={"seed": 0}, log=log)
    assert "discarding the partial store" in log.getvalue() and "(model)" in log.getvalue()


@pytest.mark.parametrize("change", [{"max_batch": 3}, {"max_tokens": 40}])
def test_resume_with_another_batching_restarts_instead_of_mixing(tmp_path, monkeypatch, change):
    """Killed, then resumed with another batch size: the partial store is discarded, naming the
    batching, and the result is the one a clean run with the new batching writes."""
    seqs = random_sequences(np.random.default_rng(13), 12)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, KeyboardInterrupt("killed"))  # batch_size: auto
    log = io.StringIO()
    stats = run(tmp_path / "r.zarr", seqs, log=log, **change)
    assert "discarding the partial store" in log.getvalue() and "different batching" in log.getvalue(), log.getvalue()
    assert "resuming" not in log.getvalue() and stats["chunks_computed"] == 3
    run(tmp_path / "clean.zarr", seqs, **change)
    a, b = store.open_store(tmp_path / "r.zarr"), store.open_store(tmp_path / "clean.zarr")
    np.testing.assert_array_equal(a["rs"][:], b["rs"][:])
    assert a.attrs["batching"] == b.attrs["batching"] == change
    assert a.attrs["attn_implementation"] == loaded_tiny().model.config._attn_implementation != "None"


def test_resume_with_the_same_content_resumes(tmp_path, monkeypatch):
    seqs = random_sequences(np.random.default_rng(12), 12)
    interrupted_run(monkeypatch, tmp_path / "r.zarr", seqs, KeyboardInterrupt("killed"))
    log = io.StringIO()
    stats = run(tmp_path / "r.zarr", seqs, log=log)
    assert "resuming" in log.getvalue() and stats["chunks_computed"] == 2
    assert store.open_store(tmp_path / "r.zarr").attrs["code_sha256"]


def test_activation_store_face_reads_through_the_checked_readers(tmp_path):
    seqs = random_sequences(np.random.default_rng(8), 10)
    path = tmp_path / "s.zarr"
    run(path, seqs)
    acts = store.ActivationStore(path)
    full = store.open_store(path)["rs"][:]
    N, S, D = full.shape
    assert (acts.n_samples, acts.n_sublayers, acts.n_layers, acts.d_model) == (N, S, S // 2, D)
    assert acts.labels == sublayer_labels(S // 2) and acts.sample_chunk == 4
    np.testing.assert_array_equal(acts.units(8, 20), full[:, :, 8:20])
    np.testing.assert_array_equal(acts.layer_input(1), full[:, 2])  # L01.attn is row 2
    np.testing.assert_array_equal(acts.sublayer(3), full[:, 3])
    np.testing.assert_array_equal(np.concatenate(list(acts.chunks())), full)
    np.testing.assert_array_equal(np.concatenate(list(acts.chunks(slice(1, 3)))), full[:, 1:3])
    read = acts.sample_reader()
    got = dict(pair for ids, vecs in read(np.array([9, 0, 5])) for pair in zip(ids, vecs))
    assert sorted(got) == [0, 5, 9] and all(np.array_equal(got[i], full[i]) for i in got)
    damage(path, (1, 0, 2), "delete")  # samples 4-7, units 16-23
    acts = store.ActivationStore(path)
    for read_bad in (lambda: acts.units(16, 24), lambda: list(acts.chunks()), lambda: acts.layer_input(1),
                     lambda: list(acts.sample_reader()(np.array([5])))):
        with pytest.raises(store.StoreIntegrityError, match=r"chunk 1\.0\.2 \(rs/c/1/0/2\) is missing"):
            read_bad()
    np.testing.assert_array_equal(acts.units(0, 16), full[:, :, :16])  # untouched blocks still read


def test_a_store_of_an_older_format_is_refused_with_the_fix(tmp_path):
    seqs = random_sequences(np.random.default_rng(13), 6)
    run(tmp_path / "s.zarr", seqs)
    g = store.open_store(tmp_path / "s.zarr", mode="r+")
    g.attrs["format_version"] = 2
    for read in (lambda: store.ActivationStore(tmp_path / "s.zarr"), lambda: store.row_table(tmp_path / "s.zarr")):
        with pytest.raises(store.StoreIntegrityError, match=r"format_version 2 .*delete the store and run snakemake again"):
            read()


def test_row_and_text_tables_read_both_layouts_under_one_name(tmp_path):
    seqs = random_sequences(np.random.default_rng(14), 7, lo=3, hi=12)
    run(tmp_path / "last.zarr", seqs)
    keep = [np.arange(1, len(s)) for s in seqs]
    run(tmp_path / "pos.zarr", seqs, keep=keep)
    last, pos = store.row_table(tmp_path / "last.zarr"), store.row_table(tmp_path / "pos.zarr")
    np.testing.assert_array_equal(last["position"], [len(s) - 1 for s in seqs])
    np.testing.assert_array_equal(last["token_id"], [s[-1] for s in seqs])
    assert last["is_last"].all() and pos["is_last"].sum() == len(seqs)
    # the last-token rows of the position store are the last-token store's rows
    np.testing.assert_array_equal(pos["sample"][pos["is_last"]], last["sample"])
    np.testing.assert_array_equal(pos["token_id"][pos["is_last"]], last["token_id"])
    a = store.read_rs(tmp_path / "last.zarr")
    b = store.read_rs(tmp_path / "pos.zarr")[pos["is_last"]]
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    ta, tb = store.text_table(tmp_path / "last.zarr"), store.text_table(tmp_path / "pos.zarr")
    for k in ("sample", "corpus_index", "n_tokens", "text"):
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    np.testing.assert_array_equal(tb["first_row"], np.concatenate([[0], np.cumsum([len(k) for k in keep])[:-1]]))


# --- chunks bound to their place and their store (the manifest) ------------------------------


def swap(a, b):
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


@pytest.mark.parametrize("keep", [False, True], ids=["last", "positions"])
@pytest.mark.parametrize("fault", ["swap rows", "swap units", "from another store"])
def test_an_intact_chunk_in_the_wrong_place_is_refused(tmp_path, keep, fault):
    """Each chunk passes its own CRC32C; only the manifest shows it is not the chunk of its place."""
    seqs = random_sequences(np.random.default_rng(21), 10, lo=3, hi=9)
    kw = {"keep": [np.arange(len(s)) for s in seqs]} if keep else {}
    path, other = tmp_path / "s.zarr", tmp_path / "o.zarr"
    run(path, seqs, **kw)
    full = store.read_rs(path)
    if fault == "swap rows":
        swap(chunk_file(path, (0, 0, 1)), chunk_file(path, (1, 0, 1)))
        bad = r"chunk 0\.0\.1"
    elif fault == "swap units":
        swap(chunk_file(path, (1, 0, 0)), chunk_file(path, (1, 0, 1)))
        bad = r"chunk 1\.0\.0"
    else:  # the same index of a store of other texts (e.g. the other condition's)
        run(other, [s[::-1] for s in seqs], **kw)  # same shape, other texts
        f = chunk_file(path, (1, 0, 2))
        f.unlink()  # break the hard link to the work twin, as cp would
        f.write_bytes(chunk_file(other, (1, 0, 2)).read_bytes())
        bad = r"chunk 1\.0\.2"
    where = rf"{path}: array 'rs', {bad} .*is misplaced"
    for read in (lambda: store.read_rs(path), lambda: store.verify(path),
                 lambda: store.ActivationStore(path).units(0, 32), lambda: list(store.iter_samples(path))):
        with pytest.raises(store.StoreIntegrityError, match=where):
            read()
    np.testing.assert_array_equal(store.read_rs(path, (slice(None), slice(None), slice(24, 32))), full[:, :, 24:])


def test_a_swapped_coordinate_chunk_and_a_missing_manifest_are_refused(tmp_path):
    seqs = random_sequences(np.random.default_rng(23), 10)
    path = tmp_path / "s.zarr"
    run(path, seqs)
    manifest = json.loads((path / store.MANIFEST).read_text())
    assert len(manifest["store_id"]) == 32 and len(manifest["arrays"]["rs"]) == 3 * 4
    assert "chunk_done" not in manifest["arrays"] and "sample" in manifest["arrays"]
    swap(path / "corpus_index" / "c" / "0", path / "corpus_index" / "c" / "1")
    with pytest.raises(store.StoreIntegrityError, match=r"array 'corpus_index', chunk 0 .*is misplaced"):
        store.text_table(path)
    swap(path / "corpus_index" / "c" / "0", path / "corpus_index" / "c" / "1")
    assert store.text_table(path)["corpus_index"].tolist() == [10 * i for i in range(10)]
    (path / store.MANIFEST).unlink()
    with pytest.raises(store.StoreIntegrityError, match=r"chunk_manifest.json is missing from a finished store"):
        store.read_rs(path)


def test_gather_refuses_a_shard_with_a_misplaced_chunk(tmp_path):
    seqs = random_sequences(np.random.default_rng(24), 8)
    parts = extract_shards(tmp_path, loaded_tiny(), seqs, [(0, 4), (4, 8)], 20)
    swap(chunk_file(parts[0], (0, 0, 0)), chunk_file(parts[0], (0, 0, 1)))
    with pytest.raises(store.StoreIntegrityError, match=r"shard0.zarr: array 'rs', chunk 0\.0\.0 .*is misplaced"):
        extraction.gather_shards(parts, tmp_path / "g.zarr")


# --- the store in the model's dtype (extraction.store_dtype: model) --------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_half_precision_store_holds_the_capture_bit_exactly(tmp_path, dtype):
    import torch

    from transformer_dynamics.capture import capture

    m = make_tiny_model("llama", seed=11).to(getattr(torch, dtype))
    loaded = LoadedModel(m, None, {"source": "tiny", "dtype": dtype, "n_layers": 3, "d_model": 32})
    seqs = random_sequences(np.random.default_rng(31), 10)
    kw = dict(texts=None, row_chunk=4, unit_chunk=8, attrs={"seed": 0}, max_batch=3)
    ids, n = np.arange(10), 10
    extraction.extract_to_store(loaded, tmp_path / "half.zarr", ids, ids, seqs, store_dtype="model", **kw)
    extraction.extract_to_store(loaded, tmp_path / "f32.zarr", ids, ids, seqs, **kw)
    direct = np.empty((n, 6, 32), dtype=np.float32)
    for a in range(0, n, 4):  # the extraction captures one row chunk of texts at a time
        for idx, rs in capture(m, seqs[a : a + 4], max_batch=3):
            direct[a + idx] = rs
    half = store.read_rs(tmp_path / "half.zarr")
    assert half.dtype == np.float32
    # bit-equal to the capture and to the float32 store of the same run
    np.testing.assert_array_equal(half.view(np.uint32), direct.view(np.uint32))
    np.testing.assert_array_equal(half.view(np.uint32), store.read_rs(tmp_path / "f32.zarr").view(np.uint32))
    g = store.open_store(tmp_path / "half.zarr")
    assert g.attrs["rs_dtype"] == dtype and g.attrs["store_dtype"] == "model"
    assert store.verify(g)["rs"] == 3 * 4
    size = {k: sum(f.stat().st_size for f in (tmp_path / f"{k}.zarr" / "rs").rglob("*") if f.is_file())
            for k in ("half", "f32")}
    # half the bytes to compress; on disk less than half saved (zstd already squeezes the 16
    # zero bits a bfloat16 value has as float32): docs/store.md has the measured sizes
    assert g["rs"].nbytes * 2 == store.open_store(tmp_path / "f32.zarr")["rs"].nbytes and size["half"] < size["f32"], size
    # the notebook recipe of docs/store.md
    ds = xr.open_zarr(tmp_path / "half.zarr")
    raw = ds.rs.values
    value = (raw.astype("uint32") << 16).view("float32") if dtype == "bfloat16" else raw.astype("float32")
    np.testing.assert_array_equal(value, direct)
    # a float32 model stays float32 under store_dtype: model
    assert extraction.resolve_store_dtype("model", "float32") == "float32"


def test_values_that_half_precision_cannot_hold_are_refused():
    x = np.array([1.0, 1.0 + 2**-12], dtype=np.float32)
    for dtype in ("bfloat16", "float16"):
        with pytest.raises(ValueError, match=f"1 of 2 values are not exact in {dtype}"):
            store.encode_rs(x, dtype)
    bits = store.encode_rs(np.array([1.0, -2.5, np.nan, np.inf], dtype=np.float32), "bfloat16")
    assert bits.dtype == np.uint16 and bits[0] == 0x3F80
    back = store.decode_rs(bits, "bfloat16")
    assert back[0] == 1.0 and back[1] == -2.5 and np.isnan(back[2]) and np.isinf(back[3])
