"""The activation store: a chunked Zarr v3 group that ``xarray.open_zarr`` opens.

Layout (the contract every analysis and every notebook relies on)::

    rs            float32 (sample, sublayer, unit)  shape (N, 2L, D)
    sample        int64   (sample,)        stable sample ids, same order in every condition
    corpus_index  int64   (sample,)        index of the text in the filtered corpus list
    sublayer      str     (sublayer,)      'L00.attn', 'L00.mlp', 'L01.attn', ...
    layer         int32   (sublayer,)      layer index of each sublayer
    kind          str     (sublayer,)      'attn' (pre-attention) | 'mlp' (pre-MLP)
    unit          int32   (unit,)
    token_ids     int32   (sample, position)  exactly what the model saw, padded with -1
    n_tokens      int32   (sample,)
    text          str     (sample,)        the original text (original condition only)
    chunk_done    bool    (sample_chunk,)  extraction progress, one flag per sample chunk

``rs`` is chunked ``(sample_chunk, 2L, unit_chunk)``: extraction writes whole sample chunks,
and the per-unit analyses read ``rs[:, :, u0:u1]`` for all samples touching only the chunks
of their unit block (see docs/store.md for the measurement behind the default sizes).
Values are stored as float32 whatever the model's dtype (the dtype is in the attrs).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import zarr

FORMAT_VERSION = 1


def _new_array(group: zarr.Group, name: str, data_or_shape: Any, dims: Sequence[str], **kw: Any) -> zarr.Array:
    if isinstance(data_or_shape, np.ndarray):
        arr = group.create_array(
            name, shape=data_or_shape.shape, dtype=kw.pop("dtype", data_or_shape.dtype),
            dimension_names=list(dims), **kw
        )
        arr[...] = data_or_shape
        return arr
    return group.create_array(name, shape=data_or_shape, dimension_names=list(dims), **kw)


def create_store(
    path: str | Path,
    n_samples: int,
    sublayers: Sequence[str],
    d_model: int,
    max_positions: int,
    sample_chunk: int = 64,
    unit_chunk: int = 64,
    with_text: bool = True,
    attrs: dict[str, Any] | None = None,
) -> zarr.Group:
    """Create an empty store (overwriting ``path``) with every array and coordinate."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    n_sub = len(sublayers)
    n_chunks = -(-n_samples // sample_chunk)
    rs = _new_array(
        g, "rs", (n_samples, n_sub, d_model), ("sample", "sublayer", "unit"),
        dtype="float32", chunks=(sample_chunk, n_sub, min(unit_chunk, d_model)), fill_value=np.nan,
    )
    rs.attrs["coordinates"] = "layer kind"
    rs.attrs["long_name"] = "residual stream at the last token"
    _new_array(g, "sample", (n_samples,), ("sample",), dtype="int64", chunks=(n_samples,), fill_value=-1)
    _new_array(g, "corpus_index", (n_samples,), ("sample",), dtype="int64", chunks=(n_samples,), fill_value=-1)
    _new_array(g, "sublayer", np.array(list(sublayers), dtype=str), ("sublayer",), dtype=str)
    _new_array(g, "layer", np.array([int(s[1:].split(".")[0]) for s in sublayers], dtype="int32"), ("sublayer",))
    _new_array(g, "kind", np.array([s.split(".")[1] for s in sublayers], dtype=str), ("sublayer",), dtype=str)
    _new_array(g, "unit", np.arange(d_model, dtype="int32"), ("unit",))
    _new_array(
        g, "token_ids", (n_samples, max_positions), ("sample", "position"),
        dtype="int32", chunks=(sample_chunk, max_positions), fill_value=-1,
    )
    _new_array(g, "n_tokens", (n_samples,), ("sample",), dtype="int32", chunks=(n_samples,), fill_value=0)
    if with_text:
        _new_array(g, "text", (n_samples,), ("sample",), dtype=str, chunks=(n_samples,))
    _new_array(g, "chunk_done", (n_chunks,), ("sample_chunk",), dtype="bool", chunks=(n_chunks,), fill_value=False)
    g.attrs.update({"format_version": FORMAT_VERSION, "sample_chunk": sample_chunk, **(attrs or {})})
    return g


def open_store(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a store written by :func:`create_store`."""
    p = Path(path)
    if not (p / "zarr.json").exists():
        raise FileNotFoundError(f"{p} is not a Zarr store (no zarr.json): run the extraction first")
    return zarr.open_group(str(p), mode=mode, zarr_format=3)


def pending_chunks(group: zarr.Group) -> list[int]:
    """Sample-chunk indices not yet written (the resume point of an interrupted extraction)."""
    done = group["chunk_done"][:]
    return [int(i) for i in np.flatnonzero(~done)]


def chunk_bounds(group: zarr.Group, chunk: int) -> tuple[int, int]:
    """``(start, stop)`` sample rows of sample chunk ``chunk``."""
    c = int(group.attrs["sample_chunk"])
    n = group["rs"].shape[0]
    return chunk * c, min(n, (chunk + 1) * c)


def write_chunk(
    group: zarr.Group,
    chunk: int,
    rs: np.ndarray,
    sample_ids: np.ndarray,
    corpus_index: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    texts: Sequence[str] | None = None,
) -> None:
    """Write one whole sample chunk, then mark it done (so a crash never marks a partial chunk)."""
    s0, s1 = chunk_bounds(group, chunk)
    if rs.shape[0] != s1 - s0:
        raise ValueError(f"chunk {chunk} holds {s1 - s0} samples, got {rs.shape[0]}")
    width = group["token_ids"].shape[1]
    tok = np.full((s1 - s0, width), -1, dtype=np.int32)
    for i, t in enumerate(token_ids):
        tok[i, : len(t)] = t
    group["rs"][s0:s1] = rs.astype(np.float32, copy=False)
    group["token_ids"][s0:s1] = tok
    group["n_tokens"][s0:s1] = np.array([len(t) for t in token_ids], dtype=np.int32)
    group["sample"][s0:s1] = sample_ids
    group["corpus_index"][s0:s1] = corpus_index
    if texts is not None and "text" in group:
        group["text"][s0:s1] = np.array(list(texts), dtype=str)
    group["chunk_done"][chunk] = True


def finalize(path: str | Path) -> None:
    """Check every chunk is written and consolidate metadata for fast opening."""
    g = open_store(path, mode="r+")
    missing = pending_chunks(g)
    if missing:
        raise RuntimeError(f"{path}: sample chunks {missing} were never written")
    g.attrs["complete"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def _as_group(path_or_group: str | Path | zarr.Group) -> zarr.Group:
    return path_or_group if isinstance(path_or_group, zarr.Group) else open_store(path_or_group)


def read_units(path_or_group: str | Path | zarr.Group, u0: int, u1: int) -> np.ndarray:
    """``rs[:, :, u0:u1]`` for all samples, shape ``(N, 2L, u1 - u0)``, float64.

    Reads only the chunks of that unit block: memory is ``N * 2L * (u1 - u0)`` values.
    """
    g = _as_group(path_or_group)
    return np.asarray(g["rs"][:, :, u0:u1], dtype=np.float64)


def iter_samples(path_or_group: str | Path | zarr.Group, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, rs[start:start+rows])`` over the samples in bounded memory."""
    g = _as_group(path_or_group)
    rs = g["rs"]
    step = rows or rs.chunks[0]
    for s0 in range(0, rs.shape[0], step):
        yield s0, np.asarray(rs[s0 : s0 + step], dtype=np.float32)


def copy_into(dst: zarr.Group, src: zarr.Group, row0: int) -> None:
    """Copy a complete shard store into ``dst`` starting at sample row ``row0``.

    Both stores must share the sample chunk size and ``row0`` must be a multiple of it, so no
    two writers ever touch the same chunk (zarr has no locking). Copies one sample chunk at a
    time: memory is bounded by a chunk whatever N is.
    """
    c = int(dst.attrs["sample_chunk"])
    if int(src.attrs["sample_chunk"]) != c or row0 % c:
        raise ValueError(f"shard at row {row0} is not aligned to the destination's sample chunks of {c}")
    if pending_chunks(src):
        raise RuntimeError(f"shard store has unwritten chunks {pending_chunks(src)}")
    n = src["rs"].shape[0]
    for s0 in range(0, n, c):
        s1 = min(n, s0 + c)
        dst["rs"][row0 + s0 : row0 + s1] = src["rs"][s0:s1]
        dst["token_ids"][row0 + s0 : row0 + s1] = src["token_ids"][s0:s1]
        dst["chunk_done"][(row0 + s0) // c] = True
    names = ["sample", "corpus_index", "n_tokens"] + (["text"] if "text" in dst and "text" in src else [])
    for name in names:
        dst[name][row0 : row0 + n] = src[name][:]


def dumps_attrs(attrs: dict[str, Any]) -> str:
    """Canonical JSON of attrs (used as a fingerprint for resuming)."""
    return json.dumps(attrs, sort_keys=True, default=str)
