"""Every token position: selection, exact capture at every kept position, the position store
(xarray-readable, resumable, checked), and bucket views (beyond the paper; issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformer_dynamics import extraction, store, views
from transformer_dynamics.capture import capture, decoder_layers, get_arch
from transformer_dynamics.models import LoadedModel
from transformer_dynamics.positions import BUCKETS, bucket_of, bucket_rows, parse_positions, select_positions

from conftest import make_tiny_model, random_sequences


def reference_all_positions(model, seq):
    """(T, 2L, D) from HF: hidden_states[l] (pre-attention) and hidden_states[l] + what the
    attention block adds (pre-MLP) at every position, the sequence run alone (no padding)."""
    arch = get_arch(model)
    added, hooks = {}, []
    for l, layer in enumerate(decoder_layers(model)):
        if arch.resid_mid == "pre_feedforward_layernorm":  # gemma2: the normed attention output
            hooks.append(layer.post_attention_layernorm.register_forward_hook(
                lambda m, a, o, l=l: added.__setitem__(l, o[0].clone())))
        else:
            mod = layer.self_attn if hasattr(layer, "self_attn") else layer.attn
            hooks.append(mod.register_forward_hook(lambda m, a, o, l=l: added.__setitem__(l, o[0][0].clone())))
    with torch.no_grad():
        out = model(torch.tensor([seq]), output_hidden_states=True)
    for h in hooks:
        h.remove()
    pre = torch.stack([h[0] for h in out.hidden_states[:-1]], dim=1)  # (T, L, D)
    mid = pre + torch.stack([added[l] for l in range(len(added))], dim=1)
    return torch.stack([pre, mid], dim=2).reshape(pre.shape[0], -1, pre.shape[-1]).numpy()


def test_parse_positions_rejects_bad_values():
    assert str(parse_positions("sample:16")) == "sample:16"
    assert parse_positions("all").mode == "all"
    for bad in ("sample:0", "sample", "first", "sample:-2"):
        with pytest.raises(ValueError, match="last, all, sample:K"):
            parse_positions(bad)


def test_select_positions_keeps_last_and_draws_per_sample():
    rng = np.random.default_rng(5)
    n_tokens = rng.integers(2, 40, size=50)
    ids = np.arange(100, 150)
    keep = select_positions(n_tokens, ids, "sample:6", seed=3)
    for n, k in zip(n_tokens, keep):
        assert k[-1] == n - 1 and np.all(np.diff(k) > 0) and k[0] >= 1  # BOS excluded by default
        assert len(k) == min(6, n - 1)
    # a text's draw depends on (seed, sample id) only: the same after reordering the texts
    perm = rng.permutation(50)
    again = select_positions(n_tokens[perm], ids[perm], "sample:6", seed=3)
    for j, i in enumerate(perm):
        np.testing.assert_array_equal(again[j], keep[i])
    assert any(not np.array_equal(a, b) for a, b in zip(keep, select_positions(n_tokens, ids, "sample:6", seed=4)))
    every = select_positions(n_tokens, ids, "all", seed=0, include_bos=True)
    assert all(np.array_equal(k, np.arange(n)) for k, n in zip(every, n_tokens))
    assert all(np.array_equal(k, [n - 1]) for k, n in zip(select_positions(n_tokens, ids, "last", 0), n_tokens))


def test_buckets_partition_tokens_and_last_is_separate():
    position = np.array([0, 1, 2, 3, 4, 9, 15, 16, 31, 32, 200, 5])
    is_last = np.zeros(12, bool)
    is_last[[5, 11]] = True
    labels = bucket_of(position, is_last)
    assert list(labels) == ["0", "1", "2-3", "2-3", "4-7", "last", "8-15", "16-31", "16-31", "32+", "32+", "last"]
    rows = bucket_rows(position, is_last, "32+", None, 0)
    np.testing.assert_array_equal(rows, [9, 10])
    capped = bucket_rows(np.arange(1000), np.zeros(1000, bool), "all", 100, seed=1)
    assert len(capped) == 100 and np.all(np.diff(capped) > 0)
    np.testing.assert_array_equal(capped, bucket_rows(np.arange(1000), np.zeros(1000, bool), "all", 100, seed=1))
    assert set(BUCKETS) >= {"all", "last", "0", "32+"}


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("max_batch", [1, 4])
def test_capture_at_kept_positions_equals_output_hidden_states(tiny_model, padding_side, max_batch):
    rng = np.random.default_rng(2024)
    seqs = random_sequences(rng, 7, lo=1, hi=25)
    keep = select_positions([len(s) for s in seqs], np.arange(7), "sample:5", seed=1, include_bos=True)
    keep[0] = np.arange(len(seqs[0]))  # one sequence with every position
    got = {}
    for idx, rs in capture(tiny_model, seqs, keep, padding_side=padding_side, max_batch=max_batch):
        r = 0
        for i in idx:
            got[int(i)] = rs[r : r + len(keep[i])]
            r += len(keep[i])
        assert r == len(rs)
    for i, s in enumerate(seqs):
        ref = reference_all_positions(tiny_model, s)
        np.testing.assert_allclose(got[i], ref[keep[i]], atol=1e-5, rtol=0)


def test_capture_keeping_the_last_position_equals_the_last_token_capture(tiny_model):
    rng = np.random.default_rng(3)
    seqs = random_sequences(rng, 9)
    keep = [np.array([len(s) - 1]) for s in seqs]
    a = np.concatenate([rs for _, rs in capture(tiny_model, seqs, keep, max_batch=9)])
    b = np.concatenate([rs for _, rs in capture(tiny_model, seqs, max_batch=9)])
    np.testing.assert_array_equal(a, b)


def test_capture_rejects_padded_or_unsorted_positions():
    m = make_tiny_model("llama")
    with pytest.raises(ValueError, match="ascending"):
        list(capture(m, [[1, 5, 6]], [np.array([1, 3])]))
    with pytest.raises(ValueError, match="ascending"):
        list(capture(m, [[1, 5, 6]], [np.array([2, 1])]))


def _loaded(arch="llama"):
    m = make_tiny_model(arch)
    L = 3
    return LoadedModel(m, None, {"source": f"tiny-{arch}", "dtype": "float32", "n_layers": L, "d_model": 32})


def _extract(tmp_path, loaded, seqs, keep, name="p.zarr", **kw):
    kw.setdefault("row_chunk", 16)
    kw.setdefault("unit_chunk", 8)
    return extraction.extract_to_store(
        loaded, tmp_path / name, np.arange(len(seqs)) + 10, np.arange(len(seqs)), seqs, keep=keep,
        texts=[f"text {i}" for i in range(len(seqs))], max_batch=3, **kw)


def test_position_store_rows_equal_reference_and_xarray_opens_it(tmp_path):
    xr = pytest.importorskip("xarray")
    loaded = _loaded("qwen2")
    rng = np.random.default_rng(11)
    seqs = random_sequences(rng, 12, lo=1, hi=30)
    keep = select_positions([len(s) for s in seqs], np.arange(12) + 10, "sample:6", seed=0)
    _extract(tmp_path, loaded, seqs, keep)
    ds = xr.open_zarr(tmp_path / "p.zarr")
    assert ds["rs"].dims == ("token", "sublayer", "unit")
    assert ds.sizes["token"] == sum(len(k) for k in keep)
    for i, s in enumerate(seqs):
        ref = reference_all_positions(loaded.model, s)[keep[i]]
        rows = np.flatnonzero(ds["sample"].values == i + 10)
        np.testing.assert_array_equal(ds["position"].values[rows], keep[i])
        np.testing.assert_array_equal(ds["token_id"].values[rows], np.asarray(s)[keep[i]])
        assert ds["is_last"].values[rows].tolist() == [False] * (len(rows) - 1) + [True]
        np.testing.assert_allclose(ds["rs"].values[rows], ref, atol=1e-5, rtol=0)
    assert ds["text"].values[3] == "text 3" and int(ds["text_n_tokens"].values[3]) == len(seqs[3])
    assert store.verify(tmp_path / "p.zarr")["rs"] > 0


def test_position_store_resumes_after_a_crash_with_identical_numbers(tmp_path, monkeypatch):
    loaded = _loaded("llama")
    rng = np.random.default_rng(12)
    seqs = random_sequences(rng, 20, lo=2, hi=30)
    keep = select_positions([len(s) for s in seqs], np.arange(20) + 10, "all", seed=0)
    _extract(tmp_path, loaded, seqs, keep, name="ref.zarr")
    ref = store.read_rs(tmp_path / "ref.zarr")

    calls = {"n": 0}
    real_add = store.RowWriter.add

    def crash_after_three(self, row0, rows):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("killed")
        return real_add(self, row0, rows)

    monkeypatch.setattr(store.RowWriter, "add", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        _extract(tmp_path, loaded, seqs, keep)
    partial = store.open_store(tmp_path / "p.zarr.partial")
    done_before = int(partial["chunk_done"][:].sum())
    assert 0 < done_before < partial["chunk_done"].shape[0]
    monkeypatch.setattr(store.RowWriter, "add", real_add)
    stats = _extract(tmp_path, loaded, seqs, keep)
    assert stats["chunks_computed"] < len(extraction.capture_groups(store.rows_per_text(keep, len(keep))[1], 16))
    np.testing.assert_array_equal(store.read_rs(tmp_path / "p.zarr"), ref)


def test_position_store_different_positions_are_not_resumed(tmp_path, capsys):
    loaded = _loaded("llama")
    seqs = random_sequences(np.random.default_rng(1), 6, lo=3, hi=12)
    lens = [len(s) for s in seqs]
    _extract(tmp_path, loaded, seqs, select_positions(lens, np.arange(6), "all", 0), work_path=tmp_path / "w")
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        _extract(tmp_path, loaded, seqs, select_positions(lens, np.arange(6), "sample:2", 0), work_path=tmp_path / "w",
                 log=fh)
    assert "discarding the partial store" in log.read_text()


def test_corrupted_position_chunk_is_refused(tmp_path):
    loaded = _loaded("llama")
    seqs = random_sequences(np.random.default_rng(2), 10, lo=5, hi=20)
    keep = select_positions([len(s) for s in seqs], np.arange(10), "all", 0)
    _extract(tmp_path, loaded, seqs, keep)
    chunk = sorted((tmp_path / "p.zarr" / "rs" / "c").rglob("*"))
    victim = [p for p in chunk if p.is_file()][1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(store.StoreIntegrityError, match="corrupted|checksum"):
        views.open_view(tmp_path / "p.zarr", "all", None, 0).units(0, 32)


def test_bucket_view_equals_fancy_indexing(tmp_path):
    loaded = _loaded("gpt2")
    seqs = random_sequences(np.random.default_rng(4), 15, lo=2, hi=40)
    keep = select_positions([len(s) for s in seqs], np.arange(15), "all", 0, include_bos=True)
    _extract(tmp_path, loaded, seqs, keep)
    full = store.read_rs(tmp_path / "p.zarr")
    t = store.row_table(tmp_path / "p.zarr")
    for bucket in BUCKETS:
        view = views.open_view(tmp_path / "p.zarr", bucket, 7, seed=2)
        rows = bucket_rows(t["position"], t["is_last"], bucket, 7, 2)
        assert view.n_samples == len(rows)
        if not len(rows):
            continue
        np.testing.assert_array_equal(view.units(3, 9), full[rows][:, :, 3:9].astype(np.float64))
        np.testing.assert_array_equal(np.concatenate(list(view.chunks(rows=4))), full[rows])
        np.testing.assert_array_equal(view.sublayer(2), full[rows][:, 2])
        got = {}
        for ids, vec in view.sample_reader()(np.arange(len(rows))[::-1].copy()):
            got.update({int(i): v for i, v in zip(ids, vec)})
        np.testing.assert_array_equal(np.stack([got[i] for i in range(len(rows))]), full[rows])
    # BOS rows are one vector: position 0, same token, no context
    bos = full[t["position"] == 0]
    np.testing.assert_allclose(bos, np.broadcast_to(bos[0], bos.shape), atol=1e-6)


def test_degenerate_bucket_is_one_repeated_vector_across_all_blocks():
    from transformer_dynamics.views import degenerate_reason

    class Rows:
        def __init__(self, x):
            self.x, self.n_samples = x, len(x)

        def chunks(self, rows):
            for i in range(0, len(self.x), rows):
                yield self.x[i : i + rows]

    two_constant_blocks = np.concatenate([np.zeros((4096, 2, 3)), np.ones((10, 2, 3))])
    assert degenerate_reason(Rows(two_constant_blocks), 3) is None  # each block constant, not the bucket
    assert "same residual stream" in degenerate_reason(Rows(np.full((5000, 2, 3), 0.5)), 3)
    assert "min_tokens" in degenerate_reason(Rows(np.zeros((5, 2, 3))), 30)
