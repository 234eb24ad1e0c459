"""Chunk shape of the activation store: write cost per sample chunk, read cost per unit block.

    python benchmarks/store.py [--n 1000] [--sublayers 60] [--units 576]

Writes a synthetic float32 store (random data, so compression is the worst case) with
several chunk shapes and prints: files, size on disk, time to write the whole store one
sample chunk at a time (what extraction does), time to read one 64-unit block for all
samples (what each per-unit job does), and time to stream the whole store by sample chunks
(what PCA, vector statistics and the autoencoder do).

Then, at the default chunk shape, the cost of integrity: CRC32C checksums in the codec
pipeline and the checked readers of ``transformer_dynamics.store`` (every chunk's presence
checked before a read), against plain zstd and plain zarr reads; best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sublayers", type=int, default=60)
    ap.add_argument("--units", type=int, default=576)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    N, S, D = args.n, args.sublayers, args.units
    data = np.random.default_rng(0).normal(size=(N, S, D)).astype(np.float32)
    tmp = Path(tempfile.mkdtemp())
    print(f"store ({N}, {S}, {D}) float32 = {data.nbytes / 1e6:.0f} MB")
    print(f"{'chunks (sample, sublayer, unit)':<34}{'files':>7}{'MB':>7}{'write s':>9}{'block read s':>14}{'stream s':>10}")
    for sc, uc in ((100, 64), (100, 576), (25, 64), (1000, 64), (100, 16)):
        path = tmp / f"s{sc}_{uc}.zarr"
        g = zarr.open_group(str(path), mode="w", zarr_format=3)
        a = g.create_array("rs", shape=(N, S, D), chunks=(sc, S, uc), dtype="float32")
        t = time.perf_counter()
        for s0 in range(0, N, sc):
            a[s0 : s0 + sc] = data[s0 : s0 + sc]
        w = time.perf_counter() - t
        t = time.perf_counter()
        block = a[:, :, 64:128]
        r = time.perf_counter() - t
        assert np.array_equal(block, data[:, :, 64:128])
        t = time.perf_counter()
        for s0 in range(0, N, 100):
            a[s0 : s0 + 100]
        st = time.perf_counter() - t
        files = sum(1 for p in path.rglob("*") if p.is_file())
        mb = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
        print(f"{str((sc, S, uc)):<34}{files:>7}{mb:>7.0f}{w:>9.2f}{r:>14.3f}{st:>10.2f}")
    checksum_cost(data, tmp, args.repeat)
    write_throughput(data, tmp, args.repeat)
    shutil.rmtree(tmp)


def write_throughput(data: np.ndarray, tmp: Path, repeat: int) -> None:
    """Store writes (RowWriter) against the codec's own throughput, float32 and bfloat16."""
    import google_crc32c
    from numcodecs import Zstd

    from transformer_dynamics import store
    from transformer_dynamics.sublayers import sublayer_labels

    N, S, D = data.shape
    sc, uc = 100, 64
    bf = (np.ascontiguousarray(data).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # exact in bfloat16
    gb = bf.nbytes / 1e9
    print(f"\nwrite throughput at chunks {(sc, S, uc)}, {gb:.2f} GB of float32 activations exact in bfloat16, "
          f"best of {repeat}")
    print(f"{'rs stored as':<14}{'MB on disk':>11}{'codec GB/s':>12}{'store GB/s':>12}{'store / codec':>15}")
    zstd = Zstd(level=0)
    for rs_dtype in ("float32", "bfloat16"):
        enc = store.encode_rs(bf, rs_dtype)
        chunks = [np.ascontiguousarray(enc[s0 : s0 + sc, :, u0 : u0 + uc])
                  for s0 in range(0, N, sc) for u0 in range(0, D, uc)]
        codec = w = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            for c in chunks:
                google_crc32c.value(zstd.encode(c))
            codec = min(codec, time.perf_counter() - t)
            path = tmp / f"write_{rs_dtype}.zarr"
            g = store.create_store(path, sublayer_labels(S // 2), D, np.arange(N), np.arange(N),
                                   [[1, 2]] * N, row_chunk=sc, unit_chunk=uc, rs_dtype=rs_dtype)
            t = time.perf_counter()
            writer = store.RowWriter(g)
            for s0 in range(0, N, sc):
                writer.add(s0, bf[s0 : s0 + sc])
            writer.close()
            w = min(w, time.perf_counter() - t)
        assert np.array_equal(store.read_rs(path).view(np.uint32), bf.view(np.uint32))
        mb = sum(p.stat().st_size for p in (path / "rs").rglob("*") if p.is_file()) / 1e6
        print(f"{rs_dtype:<14}{mb:>11.1f}{gb / codec:>12.2f}{gb / w:>12.2f}{codec / w:>14.0%}")


def checksum_cost(data: np.ndarray, tmp: Path, repeat: int) -> None:
    """Write/read times at the default chunks with and without CRC32C and checked reads."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    from transformer_dynamics import store

    N, S, D = data.shape
    sc, uc = 100, 64
    print(f"\nintegrity cost at chunks {(sc, S, uc)}, best of {repeat}")
    print(f"{'codecs / reader':<34}{'MB':>7}{'write s':>9}{'block read s':>14}{'stream s':>10}{'verify s':>10}")
    for label, compressors, checked in (
        ("zstd, zarr reads", (ZstdCodec(level=0),), False),
        ("zstd + crc32c, zarr reads", (ZstdCodec(level=0), Crc32cCodec()), False),
        ("zstd + crc32c, checked reads", (ZstdCodec(level=0), Crc32cCodec()), True),
    ):
        w = r = st = v = float("inf")
        for _ in range(repeat):
            path = tmp / "integrity.zarr"
            if path.exists():
                shutil.rmtree(path)
            g = zarr.open_group(str(path), mode="w", zarr_format=3)
            g.attrs["format_version"] = store.FORMAT_VERSION
            a = g.create_array("rs", shape=(N, S, D), chunks=(sc, S, uc), dtype="float32", compressors=compressors)
            t = time.perf_counter()
            for s0 in range(0, N, sc):
                a[s0 : s0 + sc] = data[s0 : s0 + sc]
            w = min(w, time.perf_counter() - t)
            view = store.checked(g) if checked else a
            t = time.perf_counter()
            block = np.asarray(view[:, :, 64:128])
            r = min(r, time.perf_counter() - t)
            assert np.array_equal(block, data[:, :, 64:128])
            t = time.perf_counter()
            for s0 in range(0, N, sc):
                view[s0 : s0 + sc]
            st = min(st, time.perf_counter() - t)
            if checked:
                t = time.perf_counter()
                store.verify(g)
                v = min(v, time.perf_counter() - t)
        mb = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
        vs = f"{v:>10.2f}" if checked else f"{'':>10}"
        print(f"{label:<34}{mb:>7.1f}{w:>9.3f}{r:>14.4f}{st:>10.3f}{vs}")


if __name__ == "__main__":
    main()
