"""Bounded memory: stages that need a block or a chunk never load the whole (N, 2L, D) array.

Peak traced memory (numpy and zarr buffers) must not grow with the number of samples for the
streaming stages, and a unit-block read must cost about the block, not the store.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from transformer_dynamics import pca, store, unit_stats
from transformer_dynamics.sublayers import sublayer_labels

LAYERS, D = 10, 512


def make_store(path, n):
    labels = sublayer_labels(LAYERS)
    g = store.create_store(path, labels, D, np.arange(n), np.zeros(n, int), [[1, 2]] * n, row_chunk=100, unit_chunk=32)
    rng = np.random.default_rng(0)
    writer = store.RowWriter(g)
    for c in range(n // 100):
        writer.add(c * 100, rng.normal(size=(100, 2 * LAYERS, D)).astype(np.float32))
    writer.close()
    store.finalize(path)
    return g, labels


def peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_block_read_costs_the_block_not_the_store(tmp_path):
    g, _ = make_store(tmp_path / "s.zarr", 2000)
    full = g["rs"].nbytes  # 82 MB as float32
    block32 = 2000 * 2 * LAYERS * 32 * 4
    peak = peak_bytes(lambda: store.read_units(g, 0, 32))
    assert peak < 4 * block32 < 0.3 * full, (peak, block32, full)  # float32 read + float64 copy


def test_streaming_stages_do_not_grow_with_n(tmp_path):
    small, labels = make_store(tmp_path / "small.zarr", 400)
    big, _ = make_store(tmp_path / "big.zarr", 2400)
    for stage in (
        lambda g: unit_stats.vector_stats((rs for _, rs in store.iter_samples(g)), labels),
        lambda g: pca.fit_pca(rs for _, rs in store.iter_samples(g)),
    ):
        p_small = peak_bytes(lambda: stage(small))
        p_big = peak_bytes(lambda: stage(big))
        # 6x the samples: only the small per-sample summaries (N x 2L floats) may grow
        assert p_big < 1.3 * p_small + 2400 * 2 * LAYERS * 8 * 4, (p_small, p_big)
        assert p_big < 0.5 * big["rs"].nbytes, (p_big, big["rs"].nbytes)
