"""The activation store: a chunked Zarr v3 group that ``xarray.open_zarr`` opens.

One format for every token layout (the contract every analysis and every notebook relies on).
``rs`` holds one row per captured token; the ``layout`` attribute says which:

- ``last`` (the paper, results/<model>/activations/<condition>.zarr): one row per text, its
  last real token; the row dimension is ``sample``::

    rs            float32 (sample, sublayer, unit)  shape (N, 2L, D)
    sample        int64   (sample,)        stable sample ids, same order in every condition
    corpus_index  int64   (sample,)        index of the text in the filtered corpus list
    n_tokens      int32   (sample,)        tokens of the text, BOS included
    token_ids     int32   (sample, position)  exactly what the model saw, padded with -1
    text          str     (sample,)        the original text (original condition only)

- ``positions`` (beyond the paper, results/<model>/positions/<condition>.zarr): one row per
  kept token; the row dimension is ``token``, the per-text arrays have dimension ``text``::

    rs                 float32 (token, sublayer, unit)  shape (T, 2L, D)
    sample             int64   (token,)   sample id of the token's text
    position           int32   (token,)   index of the token in its text (0 = BOS)
    token_id           int32   (token,)   the token the model saw there
    is_last            bool    (token,)   the token is the last of its text
    text_sample, text_corpus_index, text_n_tokens, text_first_row, text   (text,)

and in both::

    sublayer      str     (sublayer,)      'L00.attn', 'L00.mlp', 'L01.attn', ...
    layer         int32   (sublayer,)      layer index of each sublayer
    kind          str     (sublayer,)      'attn' (pre-attention) | 'mlp' (pre-MLP)
    hook          str     (sublayer,)      TransformerLens' name: blocks.3.hook_resid_pre | _mid
    unit          int32   (unit,)
    chunk_done    bool    (<row>_chunk,)   extraction progress, one flag per row chunk

:func:`text_table` and :func:`row_table` read either layout under the same names.
``rs`` is chunked ``(row_chunk, 2L, unit_chunk)``: extraction writes whole row chunks, and the
per-unit analyses read ``rs[:, :, u0:u1]`` for all rows touching only the chunks of their unit
block (see docs/store.md for the measurement behind the default sizes). Everything but ``rs``
is known before the capture and written when the store is created (:func:`create_store`);
``rs`` is filled by :class:`RowWriter`. Values are stored as float32 (default) or, with
``extraction.store_dtype: model``, in the model's half-precision dtype without rounding
(attr ``rs_dtype``; bfloat16 as its bits in ``uint16``: :func:`decode_rs`); every reader here
returns float32. ``format_version`` 4; readers refuse older stores with
the fix (re-extract).

Integrity: every chunk of every array carries a CRC32C checksum (codecs ``zstd`` then
``crc32c``), every chunk is written even when it equals the fill value, and the readers here
(:func:`read_rs`, :func:`read_units`, :func:`iter_samples`, :func:`checked`, and
:class:`ActivationStore`, the face the analyses use) refuse a missing,
truncated or corrupted chunk with a :class:`StoreIntegrityError` naming the store, the array
and the chunk, instead of returning the fill value (NaN) or a bare codec error. A finalized
store holds a chunk manifest (``chunk_manifest.json``: its ``store_id`` and each chunk's CRC32C
by array and chunk index, :func:`write_manifest`); the readers and :func:`verify` refuse an
intact chunk that is not the one the manifest holds at its place (two chunks swapped, or a
chunk copied from another store).
:func:`verify` re-checks a whole store; :func:`finalize` runs it before a store is declared
complete.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from .sublayers import hook_names, kinds_of, layers_of, pre_attention_index

FORMAT_VERSION = 4  # 2: CRC32C checksum on every chunk; 3: one format for every token layout (attrs layout, row_chunk);
# 4: the chunk manifest (each chunk bound to its array, its index and its store)
MANIFEST = "chunk_manifest.json"


class StoreIntegrityError(RuntimeError):
    """A chunk of a store is missing, truncated, fails its checksum, or is not the chunk the
    store's manifest holds at that place (swapped, or copied from another store)."""


def _compressors() -> tuple[Any, ...]:
    """zstd (zarr's default, level 0) followed by a CRC32C checksum of the compressed bytes."""
    return (ZstdCodec(level=0), Crc32cCodec())


RS_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}
"""How ``rs`` is stored for each value dtype (attr ``rs_dtype``): numpy and Zarr have no
bfloat16, so bfloat16 values are stored as their 16 bits in a ``uint16`` array (the upper half
of the float32 with the same value; :func:`decode_rs`)."""

_FILL = {"float32": np.nan, "float16": np.nan, "bfloat16": 0x7FC0}  # NaN in each encoding


def encode_rs(values: np.ndarray, rs_dtype: str) -> np.ndarray:
    """``values`` (float32) as stored for ``rs_dtype``; raises ``ValueError`` if that loses
    anything (a bfloat16 model's activations are exact in bfloat16: nothing is rounded)."""
    values = np.asarray(values, dtype=np.float32)
    if rs_dtype == "float32":
        return values
    if rs_dtype == "float16":
        out = values.astype(np.float16)
    elif rs_dtype == "bfloat16":
        out = (np.ascontiguousarray(values).view(np.uint32) >> 16).astype(np.uint16)
    else:
        raise ValueError(f"unknown rs_dtype {rs_dtype!r} (use one of {sorted(RS_DTYPES)})")
    back = decode_rs(out, rs_dtype)
    same = (back == values) | (np.isnan(back) & np.isnan(values))
    if not same.all():
        raise ValueError(
            f"{int((~same).sum())} of {same.size} values are not exact in {rs_dtype} (e.g. {values[~same][0]!r}): "
            "a store in the model's dtype holds what a model of that dtype computes; use extraction.store_dtype: "
            "float32 for this model"
        )
    return out


def decode_rs(stored: np.ndarray, rs_dtype: str) -> np.ndarray:
    """Stored ``rs`` values as float32 (bit-exact: every bfloat16 and float16 is a float32).
    In a notebook: ``(ds.rs.values.astype("uint32") << 16).view("float32")`` for a bfloat16
    store (attr ``rs_dtype``), ``ds.rs.astype("float32")`` for float16."""
    if rs_dtype == "bfloat16":
        return (np.asarray(stored).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(stored).astype(np.float32, copy=False)


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """Arrays opened inside write every chunk, even one equal to the fill value.

    Without this zarr skips such chunks and a reader cannot tell "never written" from
    "all fill value"; with it, a missing chunk is always an error. zarr reads the setting
    when an array is opened (``group[name]``), so arrays must be opened inside.
    """
    with zarr.config.set({"array.write_empty_chunks": True}):
        yield


def _new_array(group: zarr.Group, name: str, data_or_shape: Any, dims: Sequence[str], **kw: Any) -> zarr.Array:
    kw.setdefault("compressors", _compressors())
    if isinstance(data_or_shape, np.ndarray):
        arr = group.create_array(
            name, shape=data_or_shape.shape, dtype=kw.pop("dtype", data_or_shape.dtype),
            dimension_names=list(dims), **kw
        )
        arr[...] = data_or_shape
        return arr
    return group.create_array(name, shape=data_or_shape, dimension_names=list(dims), **kw)


def write_axis_coordinates(group: zarr.Group, sublayers: Sequence[str], d_model: int) -> None:
    """The ``sublayer``, ``layer``, ``kind``, ``hook`` (TransformerLens' name) and ``unit``
    coordinates every store shares."""
    _new_array(group, "sublayer", np.array(list(sublayers), dtype=str), ("sublayer",), dtype=str)
    _new_array(group, "layer", np.array(layers_of(sublayers), dtype="int32"), ("sublayer",))
    _new_array(group, "kind", np.array(kinds_of(sublayers), dtype=str), ("sublayer",), dtype=str)
    _new_array(group, "hook", np.array(hook_names(sublayers), dtype=str), ("sublayer",), dtype=str)
    _new_array(group, "unit", np.arange(d_model, dtype="int32"), ("unit",))


LAYOUTS = ("last", "positions")
"""``last``: one row per text, its last token (the paper; row dimension ``sample``);
``positions``: one row per kept token (beyond the paper; row dimension ``token``)."""

_PER_TEXT = {
    "last": ("sample", "corpus_index", "n_tokens", "token_ids", "text"),
    "positions": ("text_sample", "text_corpus_index", "text_n_tokens", "text_first_row", "text"),
}
_PER_ROW = {"last": (), "positions": ("sample", "position", "token_id", "is_last")}


def row_dim(layout: str) -> str:
    """The dimension of ``rs``'s rows: ``sample`` (layout ``last``) or ``token`` (``positions``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown store layout {layout!r}; layouts are {', '.join(LAYOUTS)}")
    return "sample" if layout == "last" else "token"


def text_dim(layout: str) -> str:
    """The dimension of the per-text arrays: ``sample`` (one row per text) or ``text``."""
    return "sample" if row_dim(layout) == "sample" else "text"


def rows_per_text(keep: Sequence[np.ndarray] | None, n_texts: int) -> tuple[np.ndarray, np.ndarray]:
    """``(first_row, n_rows)`` of each text: one row each when ``keep`` is None (the last token),
    else ``len(keep[i])``; a text's rows are contiguous and in text order."""
    n = np.ones(n_texts, dtype=np.int64) if keep is None else np.array([len(k) for k in keep], dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    return first, n


def layout_arrays(
    sample_ids: np.ndarray,
    corpus_index: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    keep: Sequence[np.ndarray] | None = None,
    texts: Sequence[str] | None = None,
    token_width: int | None = None,
) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(layout, per-row arrays, per-text arrays)`` of a store of these texts and kept positions.

    Everything but ``rs`` is known before the capture, so :func:`create_store` writes it at
    once; ``keep=None`` is the paper's last token (layout ``last``).
    """
    lengths = np.array([len(t) for t in token_ids], dtype=np.int32)
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    corpus_index = np.asarray(corpus_index, dtype=np.int64)
    if keep is None:
        width = int(token_width or lengths.max())
        tok = np.full((len(token_ids), width), -1, dtype=np.int32)
        for i, t in enumerate(token_ids):
            tok[i, : len(t)] = t
        per_text = {"sample": sample_ids, "corpus_index": corpus_index, "n_tokens": lengths, "token_ids": tok}
        if texts is not None:
            per_text["text"] = np.array(list(texts), dtype=str)
        return "last", {}, per_text
    keep = [np.asarray(k, dtype=np.int64) for k in keep]
    first, n_rows = rows_per_text(keep, len(keep))
    position = np.concatenate(keep).astype(np.int32)
    per_row = {
        "sample": np.repeat(sample_ids, n_rows),
        "position": position,
        "token_id": np.concatenate([np.asarray(t, dtype=np.int32)[k] for t, k in zip(token_ids, keep)]),
        "is_last": position == np.repeat(lengths - 1, n_rows),
    }
    per_text = {"text_sample": sample_ids, "text_corpus_index": corpus_index, "text_n_tokens": lengths,
                "text_first_row": first}
    if texts is not None:
        per_text["text"] = np.array(list(texts), dtype=str)
    return "positions", per_row, per_text


def create_store(
    path: str | Path,
    sublayers: Sequence[str],
    d_model: int,
    sample_ids: np.ndarray,
    corpus_index: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    keep: Sequence[np.ndarray] | None = None,
    texts: Sequence[str] | None = None,
    token_width: int | None = None,
    row_chunk: int = 100,
    unit_chunk: int = 64,
    attrs: dict[str, Any] | None = None,
    rs_dtype: str = "float32",
) -> zarr.Group:
    """Create a store (overwriting ``path``) with every array but ``rs`` written.

    ``rs`` is filled row chunk by row chunk (:class:`RowWriter`). ``keep=None``: the last
    token of each text (layout ``last``), else the positions ``keep[i]`` of text ``i``
    (layout ``positions``); see the module docstring for both layouts. ``rs_dtype``: the
    dtype of the stored values (:data:`RS_DTYPES`).
    """
    layout, per_row, per_text = layout_arrays(sample_ids, corpus_index, token_ids, keep, texts, token_width)
    return create_from_arrays(path, layout, sublayers, d_model, per_row, per_text, row_chunk, unit_chunk, attrs,
                              rs_dtype)


def create_from_arrays(
    path: str | Path,
    layout: str,
    sublayers: Sequence[str],
    d_model: int,
    per_row: dict[str, np.ndarray],
    per_text: dict[str, np.ndarray],
    row_chunk: int,
    unit_chunk: int,
    attrs: dict[str, Any] | None = None,
    rs_dtype: str = "float32",
) -> zarr.Group:
    """:func:`create_store` from the arrays of :func:`layout_arrays` (also used by :func:`gather`)."""
    if rs_dtype not in RS_DTYPES:
        raise ValueError(f"unknown rs_dtype {rs_dtype!r} (use one of {sorted(RS_DTYPES)})")
    rdim, tdim = row_dim(layout), text_dim(layout)
    n_rows = len(per_row["sample"]) if per_row else len(per_text["sample"])
    with _writing():
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        g = zarr.open_group(str(path), mode="w", zarr_format=3)
        n_sub = len(sublayers)
        c = max(1, min(int(row_chunk), n_rows))
        n_chunks = -(-n_rows // c)
        rs = _new_array(
            g, "rs", (n_rows, n_sub, d_model), (rdim, "sublayer", "unit"),
            dtype=RS_DTYPES[rs_dtype], chunks=(c, n_sub, min(unit_chunk, d_model)), fill_value=_FILL[rs_dtype],
        )
        if rs_dtype == "bfloat16":
            rs.attrs["values"] = ("bfloat16 bits: as float32, (ds.rs.values.astype('uint32') << 16).view('float32'); "
                                  "transformer_dynamics.store readers return float32")
        rs.attrs["coordinates"] = "layer kind hook" if layout == "last" else "sample position token_id layer kind hook"
        rs.attrs["long_name"] = ("residual stream at the last token" if layout == "last"
                                 else "residual stream at the captured token positions")
        for name, data in per_row.items():
            _new_array(g, name, data, (rdim,), chunks=(c,))
        write_axis_coordinates(g, sublayers, d_model)
        for name, data in per_text.items():
            dims = (tdim, "position") if name == "token_ids" else (tdim,)
            chunks = ((c,) + data.shape[1:]) if layout == "last" else data.shape
            kw = {"dtype": str} if name == "text" else {}
            _new_array(g, name, data, dims, chunks=chunks, **kw)
        _new_array(g, "chunk_done", (n_chunks,), (f"{rdim}_chunk",), dtype="bool", chunks=(n_chunks,),
                   fill_value=False)
        g.attrs.update({"format_version": FORMAT_VERSION, "layout": layout, "row_chunk": c, "rs_dtype": rs_dtype,
                        **(attrs or {})})
        return g


def store_layout(group: zarr.Group) -> str:
    """The layout of a store (``last`` | ``positions``), refusing a store of an older format."""
    version = int(group.attrs.get("format_version", 1))
    if version < FORMAT_VERSION:
        raise StoreIntegrityError(
            f"{_store_name(group)}: format_version {version} is older than this package's {FORMAT_VERSION}; "
            "delete the store and run snakemake again to re-extract it (docs/store.md)"
        )
    return str(group.attrs["layout"])


def text_table(path_or_group: str | Path | zarr.Group) -> dict[str, np.ndarray]:
    """The per-text arrays under layout-free names: ``sample``, ``corpus_index``, ``n_tokens``,
    ``first_row`` (and ``text`` where stored), one entry per text in store order."""
    g = _as_group(path_or_group)
    layout = store_layout(g)
    names = dict(zip(("sample", "corpus_index", "n_tokens", "first_row"), _PER_TEXT["positions"]))
    if layout == "last":
        out = {k: np.asarray(checked(g, k)[:]) for k in ("sample", "corpus_index", "n_tokens")}
        out["first_row"] = np.arange(len(out["sample"]), dtype=np.int64)
    else:
        out = {k: np.asarray(checked(g, v)[:]) for k, v in names.items()}
    if "text" in g:
        out["text"] = np.asarray(checked(g, "text")[:])
    return out


def row_table(path_or_group: str | Path | zarr.Group) -> dict[str, np.ndarray]:
    """Per row of ``rs``: ``sample`` (the text's sample id), ``position`` (token index, 0 =
    BOS), ``token_id`` and ``is_last``, whatever the layout."""
    g = _as_group(path_or_group)
    if store_layout(g) == "positions":
        return {k: np.asarray(checked(g, k)[:]) for k in _PER_ROW["positions"]}
    n_tokens = np.asarray(checked(g, "n_tokens")[:])
    tok = np.asarray(checked(g, "token_ids")[:])
    return {"sample": np.asarray(checked(g, "sample")[:]), "position": (n_tokens - 1).astype(np.int32),
            "token_id": tok[np.arange(len(tok)), n_tokens - 1], "is_last": np.ones(len(tok), dtype=bool)}


def made_for(attrs: dict[str, Any]) -> dict[str, Any]:
    """The settings a store was made for, from its attributes, keyed as
    :meth:`transformer_dynamics.jobs.Plan.store_made_for` keys a job's expectation."""
    corpus = attrs.get("corpus") or {}
    return {"n_samples": corpus.get("n_samples"), "seed": attrs.get("seed"),
            "corpus.min_chars": corpus.get("min_chars"), "corpus.max_chars": corpus.get("max_chars"),
            "condition": attrs.get("condition"), "dtype": attrs.get("model_dtype"),
            "positions": attrs.get("positions", "last")}


def open_store(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a store written by :func:`create_store`."""
    p = Path(path)
    if not (p / "zarr.json").exists():
        raise FileNotFoundError(f"{p} is not a Zarr store (no zarr.json): run the extraction first")
    return zarr.open_group(str(p), mode=mode, zarr_format=3)


def pending_chunks(group: zarr.Group) -> list[int]:
    """Row-chunk indices not yet written (the resume point of an interrupted extraction)."""
    done = group["chunk_done"][:]
    return [int(i) for i in np.flatnonzero(~done)]


class RowWriter:
    """Collects rows of ``rs`` in order and writes them one whole row chunk at a time, marking
    each chunk done only after it is written (so a crash never marks a partial chunk).

    ``start`` is the first row still to write (a multiple of the chunk size); rows before it
    that a resumed capture produces again are dropped. Rows may arrive in any grouping: a
    chunk is written as soon as all its rows are in the buffer.
    """

    def __init__(self, group: zarr.Group, start: int = 0) -> None:
        self.group = group
        self.c = int(group["rs"].chunks[0])
        self.T = int(group["rs"].shape[0])
        if start % self.c and start != self.T:
            raise ValueError(f"start row {start} is not at a chunk boundary (chunks of {self.c} rows)")
        self.buf: list[np.ndarray] = []
        self.buf_start = int(start)
        self.rs_dtype = str(group.attrs.get("rs_dtype", "float32"))

    def add(self, row0: int, rows: np.ndarray) -> list[int]:
        """Add the rows ``row0 .. row0 + len(rows)``; return the chunks written."""
        if row0 + len(rows) <= self.buf_start:
            return []
        if row0 < self.buf_start:
            rows = rows[self.buf_start - row0 :]
            row0 = self.buf_start
        have = self.buf_start + sum(len(b) for b in self.buf)
        if row0 != have:
            raise ValueError(f"rows must arrive in order: expected row {have}, got {row0}")
        self.buf.append(rows)
        return self._flush()

    def close(self) -> None:
        """Check that every row up to the end of the store was written."""
        if self.buf_start != self.T or self.buf:
            raise RuntimeError(f"{_store_name(self.group)}: rows {self.buf_start}..{self.T - 1} were never captured")

    def _flush(self) -> list[int]:
        """Write every chunk whose rows are all in the buffer (the last chunk ends at T)."""
        if not self.buf:
            return []
        data = np.concatenate(self.buf, axis=0) if len(self.buf) > 1 else self.buf[0]
        pos, written = 0, []
        with _writing():
            rs, done = self.group["rs"], self.group["chunk_done"]
            while self.buf_start + pos < self.T:
                r0 = self.buf_start + pos
                n = min(self.T, r0 + self.c) - r0
                if len(data) - pos < n:
                    break
                rs[r0 : r0 + n] = encode_rs(data[pos : pos + n], self.rs_dtype)
                done[r0 // self.c] = True
                written.append(r0 // self.c)
                pos += n
        self.buf = [data[pos:]] if pos < len(data) else []
        self.buf_start += pos
        return written


def finalize(path: str | Path) -> None:
    """Check every chunk is written and intact (:func:`verify`), write the chunk manifest
    (:func:`write_manifest`), then mark the store complete and consolidate metadata for fast
    opening."""
    g = open_store(path, mode="r+")
    missing = pending_chunks(g)
    if missing:
        raise RuntimeError(f"{path}: sample chunks {missing} were never written")
    verify(g)
    write_manifest(g)
    g.attrs["complete"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def _chunk_grid(arr: zarr.Array) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(-(-n // c)) for n, c in zip(arr.shape, arr.chunks))))


def _chunk_tail(path: Path) -> int:
    """The CRC32C a chunk file ends with (the ``crc32c`` codec appends it to the compressed
    bytes): 4 bytes read, no decoding."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _store_root(group: zarr.Group) -> Path | None:
    root = getattr(group.store_path.store, "root", None)
    return None if root is None else Path(root) / group.store_path.path


def write_manifest(group: zarr.Group) -> dict[str, Any]:
    """Write ``chunk_manifest.json`` into the store: for every array (but ``chunk_done``) the
    CRC32C of each chunk in grid order, under a fresh ``store_id``.

    The checksum of each chunk proves its bytes are intact but not that they are in their
    place: a chunk swapped with another of the same array, or copied from another store at the
    same index, passes it. The manifest binds each chunk's checksum to its array and its index
    in this store, and every read (:class:`CheckedArray`) and :func:`verify` compare the file's
    checksum with the manifest's. Written by :func:`finalize` after :func:`verify`.
    """
    import uuid

    root = _store_root(group)
    if root is None:
        raise ValueError(f"{_store_name(group)}: the chunk manifest needs a store on a local file system")
    arrays = {}
    for name, arr in sorted(group.arrays()):
        if name == "chunk_done":
            continue
        arrays[name] = [_chunk_tail(root / name / arr.metadata.encode_chunk_key(c)) for c in _chunk_grid(arr)]
    manifest = {"store_id": uuid.uuid4().hex, "checksum": "crc32c, the last 4 bytes of each chunk file",
                "order": "chunk grid, C order", "arrays": arrays}
    (root / MANIFEST).write_text(json.dumps(manifest, separators=(",", ":")))
    _MANIFESTS.pop(str(root), None)
    return manifest


_MANIFESTS: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}


def read_manifest(group: zarr.Group) -> dict[str, Any] | None:
    """The store's chunk manifest, or ``None`` for a store not yet finalized. A finalized
    store (attr ``complete``) without one is an error naming the fix."""
    root = _store_root(group)
    if root is None:
        return None
    p = root / MANIFEST
    try:
        st = p.stat()
    except FileNotFoundError:
        if group.attrs.get("complete"):
            raise StoreIntegrityError(
                f"{_store_name(group)}: {MANIFEST} is missing from a finished store, so its chunks cannot be "
                "checked to be in their place; delete the store and run snakemake again"
            ) from None
        return None
    key = (st.st_mtime_ns, st.st_size)
    hit = _MANIFESTS.get(str(root))
    if hit is None or hit[0] != key:
        hit = (key, json.loads(p.read_text()))
        _MANIFESTS[str(root)] = hit
    return hit[1]


def _as_group(path_or_group: str | Path | zarr.Group) -> zarr.Group:
    return path_or_group if isinstance(path_or_group, zarr.Group) else open_store(path_or_group)


class CheckedArray:
    """A read-only view of a store array whose reads fail loudly on a bad chunk.

    ``checked[sel]`` returns what ``array[sel]`` returns, after checking that every chunk the
    selection touches exists (zarr would silently return the fill value for a missing one);
    a chunk that fails to decode (checksum mismatch, truncation) raises
    :class:`StoreIntegrityError` naming the store, array and chunk. ``sel`` may mix integers
    and unit-step slices (what the analyses use).
    """

    def __init__(self, array: zarr.Array, store_name: str, manifest: dict[str, Any] | None = None,
                 rs_dtype: str = "float32") -> None:
        self.array = array
        self.store_name = store_name
        self.name = array.path.rsplit("/", 1)[-1]
        self.expected = None if manifest is None else manifest["arrays"].get(self.name)
        if manifest is not None and self.expected is None and self.name != "chunk_done":
            raise StoreIntegrityError(f"{store_name}: array '{self.name}' is not in the store's {MANIFEST}; "
                                      "delete the store and run snakemake again")
        self.grid = tuple(-(-n // c) for n, c in zip(array.shape, array.chunks))
        self.rs_dtype = rs_dtype if self.name == "rs" else None

    shape = property(lambda self: self.array.shape)
    chunks = property(lambda self: self.array.chunks)
    dtype = property(lambda self: np.dtype(np.float32) if self.rs_dtype else self.array.dtype)
    ndim = property(lambda self: self.array.ndim)

    def __len__(self) -> int:
        return self.shape[0]

    def _where(self, coords: tuple[int, ...]) -> str:
        key = self.array.metadata.encode_chunk_key(coords)
        return f"{self.store_name}: array '{self.name}', chunk {'.'.join(map(str, coords))} ({self.name}/{key})"

    def _chunk_ranges(self, sel: Any) -> list[range]:
        sel = sel if isinstance(sel, tuple) else (sel,)
        if any(s is Ellipsis for s in sel):
            i = next(i for i, s in enumerate(sel) if s is Ellipsis)
            sel = sel[:i] + (slice(None),) * (self.ndim - len(sel) + 1) + sel[i + 1 :]
        sel = sel + (slice(None),) * (self.ndim - len(sel))
        ranges = []
        for s, n, c in zip(sel, self.shape, self.chunks):
            if isinstance(s, slice):
                start, stop, step = s.indices(n)
                if step != 1:
                    raise ValueError(f"{self.name}: only unit-step slices are supported, got {s}")
                ranges.append(range(start // c, -(-stop // c)) if stop > start else range(0))
            else:
                i = int(s) + n if int(s) < 0 else int(s)
                ranges.append(range(i // c, i // c + 1))
        return ranges

    def check_present(self, coords_list: Any) -> None:
        """Raise if any of the chunks in ``coords_list`` is absent from the store, or (in a
        finalized store) is not the chunk its manifest holds at that place."""
        store = self.array.store_path.store
        root = getattr(store, "root", None)
        for coords in coords_list:
            key = f"{self.array.path}/{self.array.metadata.encode_chunk_key(coords)}"
            there = Path(root, key).is_file() if root is not None else _sync(store.exists(key))
            if not there:
                raise StoreIntegrityError(
                    f"{self._where(coords)} is missing: the store is damaged or incomplete; re-run "
                    "the extraction (delete the store, then run snakemake again)"
                )
            if self.expected is not None and root is not None:
                want = self.expected[int(np.ravel_multi_index(coords, self.grid))]
                got = _chunk_tail(Path(root, key))
                if got != want:
                    self._decode(coords)  # a damaged chunk is "corrupted", not "misplaced"
                    raise StoreIntegrityError(
                        f"{self._where(coords)} is misplaced: its checksum {got:#010x} is not the {want:#010x} "
                        f"the store's {MANIFEST} holds for this chunk (a chunk moved from another place or "
                        "another store); delete the store and run snakemake again"
                    )

    def _region(self, coords: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(i * c, min(n, (i + 1) * c)) for i, c, n in zip(coords, self.chunks, self.shape))

    def __getitem__(self, sel: Any) -> Any:
        coords = list(itertools.product(*self._chunk_ranges(sel)))
        self.check_present(coords)
        try:
            out = self.array[sel]
            return decode_rs(out, self.rs_dtype) if self.rs_dtype else out
        except Exception as exc:  # find the chunk that does not decode, name it
            for c in coords:
                self._decode(c)
            raise exc

    def _decode(self, coords: tuple[int, ...]) -> None:
        """Raise :class:`StoreIntegrityError` if the chunk at ``coords`` does not decode."""
        try:
            self.array[self._region(coords)]
        except Exception as inner:
            raise StoreIntegrityError(
                f"{self._where(coords)} is corrupted ({type(inner).__name__}: {inner}); re-run the "
                "extraction (delete the store, then run snakemake again)"
            ) from inner


def _sync(coro: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coro)


def checked(path_or_group: str | Path | zarr.Group, name: str = "rs") -> CheckedArray:
    """The array ``name`` of a store, wrapped so that reads fail on a bad chunk (:class:`CheckedArray`)."""
    g = _as_group(path_or_group)
    return CheckedArray(g[name], _store_name(g), read_manifest(g), str(g.attrs.get("rs_dtype", "float32")))


def _store_name(group: zarr.Group) -> str:
    root = getattr(group.store_path.store, "root", None)
    return str(root) if root is not None else str(group.store_path)


def read_rs(path_or_group: str | Path | zarr.Group, sel: Any = slice(None)) -> np.ndarray:
    """``rs[sel]`` as stored (float32), failing on a missing or corrupted chunk."""
    return np.asarray(checked(path_or_group)[sel])


def read_units(path_or_group: str | Path | zarr.Group, u0: int, u1: int) -> np.ndarray:
    """``rs[:, :, u0:u1]`` for all samples, shape ``(N, 2L, u1 - u0)``, float64.

    Reads only the chunks of that unit block: memory is ``N * 2L * (u1 - u0)`` values.
    """
    return np.asarray(checked(path_or_group)[:, :, u0:u1], dtype=np.float64)


def iter_samples(path_or_group: str | Path | zarr.Group, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, rs[start:start+rows])`` over the samples in bounded memory."""
    rs = checked(path_or_group)
    step = rows or rs.chunks[0]
    for s0 in range(0, rs.shape[0], step):
        yield s0, np.asarray(rs[s0 : s0 + step], dtype=np.float32)


SampleReader = Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]]


def sample_reader(rs: Any, chunk: int, in_memory_mb: float = 1000.0) -> SampleReader:
    """Reader over an ``rs`` array (a :class:`CheckedArray`, or anything sliceable along
    samples): ``read(samples, rng=None)`` yields ``(sample_ids, vectors (n, S, D))`` for the
    requested samples.

    Reads whole sample chunks (in random order when ``rng`` is given) and keeps the
    requested rows (used by the CAE, §2.7). An array of at most ``in_memory_mb`` is read
    once, on first use, and served from memory (the same blocks in the same order: training
    is unchanged, each epoch saves a pass of decompression); a larger one is streamed, so
    memory is one chunk whatever N is.
    """
    nbytes = int(np.prod(rs.shape)) * 4
    held: list[np.ndarray] = []

    def block_of(c: int) -> np.ndarray:
        s0, s1 = c * chunk, min(rs.shape[0], (c + 1) * chunk)
        if nbytes <= in_memory_mb * 1e6:
            if not held:
                held.append(np.asarray(rs[:], dtype=np.float32))
            return held[0][s0:s1]
        return np.asarray(rs[s0:s1], dtype=np.float32)

    def read(samples: np.ndarray, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        samples = np.asarray(samples)
        chunks = np.unique(samples // chunk)
        if rng is not None:
            chunks = chunks[rng.permutation(len(chunks))]
        for c in chunks:
            sel = samples[(samples >= c * chunk) & (samples < (c + 1) * chunk)]
            yield sel, block_of(int(c))[sel - c * chunk]

    return read


class RowSubset:
    """Rows ``rows`` (sorted, distinct) of a checked ``rs`` array, sliceable like an array.

    ``subset[a:b, ...]`` returns ``rs[rows[a:b], ...]``, reading only the chunks that hold those
    rows, one chunk at a time (memory: the result plus one chunk). Used for the position
    buckets (:mod:`transformer_dynamics.views`): a bucket is a row subset of the position
    store, and every analysis runs on it unchanged.
    """

    def __init__(self, rs: CheckedArray, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or np.any(np.diff(rows) <= 0) or (len(rows) and (rows[0] < 0 or rows[-1] >= rs.shape[0])):
            raise ValueError("rows must be sorted, distinct row indices of the store")
        self.base, self.rows = rs, rows
        self.shape = (len(rows),) + tuple(rs.shape[1:])
        self.chunks = (int(rs.chunks[0]),) + tuple(rs.chunks[1:])
        self.dtype = rs.dtype
        self.ndim = rs.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sel: Any) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        first, rest = sel[0], sel[1:]
        if isinstance(first, slice):
            want = self.rows[first]
        else:
            want = self.rows[[int(first)]]
        c = self.chunks[0]
        parts = []
        for chunk in np.unique(want // c):
            here = want[(want >= chunk * c) & (want < (chunk + 1) * c)]
            block = np.asarray(self.base[(slice(int(here[0]), int(here[-1]) + 1),) + rest])
            parts.append(block[here - here[0]])
        if not parts:
            probe = np.asarray(self.base[(slice(0, 0),) + rest])
            return probe
        out = np.concatenate(parts, axis=0)
        return out if isinstance(first, slice) else out[0]


class ActivationStore:
    """The face of a finished activation store for the analyses (read-only).

    Names what the layout holds (sublayer labels, L, D, N) and offers the three access
    patterns the analyses use, all through the checked readers (a missing or corrupted chunk
    raises :class:`StoreIntegrityError`, never reads as NaN):

    - :meth:`units`: a unit block ``rs[:, :, u0:u1]`` for all samples (§2.2-2.6);
    - :meth:`chunks` / :meth:`iter_samples`: whole vectors, one sample chunk at a time
      (§2.3-2.4 vector statistics, §2.8 PCA);
    - :meth:`sublayer`: one sublayer for all samples (e.g. the swap pool at a layer, §2.8);
    - :meth:`sample_reader`: requested samples in chunk order (the CAE, §2.7).

    The observations are the rows of ``rs``: samples in a ``last`` store, tokens in a
    ``positions`` store. ``rows`` restricts the face to a subset of them (a position bucket,
    :func:`transformer_dynamics.views.open_view`): every access pattern then sees only those
    rows, in order, as if they were the whole store. Row indices of sublayers follow
    :mod:`transformer_dynamics.sublayers`.
    """

    def __init__(self, path_or_group: str | Path | zarr.Group, rows: np.ndarray | None = None) -> None:
        self.group = _as_group(path_or_group)
        self.name = _store_name(self.group)
        self.layout = store_layout(self.group)
        base = checked(self.group)
        self.rs: Any = base if rows is None else RowSubset(base, rows)
        self.labels: list[str] = [str(s) for s in self.group["sublayer"][:]]

    def row_texts(self) -> np.ndarray:
        """The text (sample id) of every row of this face, shape ``(n_samples,)``: the sample
        ids of a ``last`` store, each token's text in a ``positions`` store."""
        texts = row_table(self.group)["sample"]
        return texts if not isinstance(self.rs, RowSubset) else texts[self.rs.rows]

    @property
    def n_samples(self) -> int:
        """N, the number of observations (samples, or the tokens of a position store)."""
        return int(self.rs.shape[0])

    @property
    def n_sublayers(self) -> int:
        """2L, the number of capture points."""
        return int(self.rs.shape[1])

    @property
    def n_layers(self) -> int:
        """L, the number of decoder layers."""
        return self.n_sublayers // 2

    @property
    def d_model(self) -> int:
        """D, the residual width (number of units)."""
        return int(self.rs.shape[2])

    @property
    def sample_chunk(self) -> int:
        """Rows per Zarr chunk (the unit of extraction, resume and streaming reads)."""
        return int(self.rs.chunks[0])

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance attributes (model, corpus, software, ...)."""
        return dict(self.group.attrs)

    def units(self, u0: int, u1: int) -> np.ndarray:
        """``rs[:, :, u0:u1]``, shape ``(N, 2L, u1 - u0)``, float64; reads only that unit block's chunks."""
        return np.asarray(self.rs[:, :, u0:u1], dtype=np.float64)

    def sublayer(self, index: int) -> np.ndarray:
        """``rs[:, index, :]``, shape ``(N, D)``, float32, for a row from :mod:`.sublayers`."""
        return np.asarray(self.rs[:, int(index), :])

    def layer_input(self, layer: int) -> np.ndarray:
        """The residual entering ``layer`` (its pre-attention row) for all samples, ``(N, D)``."""
        return self.sublayer(pre_attention_index(layer))

    def iter_samples(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rs[start:start+rows])`` over the observations in bounded memory."""
        step = rows or self.sample_chunk
        for s0 in range(0, self.n_samples, step):
            yield s0, np.asarray(self.rs[s0 : s0 + step], dtype=np.float32)

    def chunks(self, sublayers: slice | None = None, rows: int | None = None) -> Iterator[np.ndarray]:
        """Whole vectors one sample chunk (or ``rows`` samples) at a time, ``(n, 2L, D)``
        float32 (or the rows ``sublayers`` of each chunk)."""
        for _, rs in self.iter_samples(rows):
            yield rs if sublayers is None else rs[:, sublayers]

    def sample_reader(self) -> SampleReader:
        """:func:`sample_reader` over this store's checked ``rs``."""
        return sample_reader(self.rs, self.sample_chunk)


def gather(shards: Sequence[str | Path], path: str | Path, drop_attrs: Sequence[str] = ()) -> zarr.Group:
    """Concatenate complete stores of consecutive texts (extraction shards) into one store.

    The per-row and per-text arrays are concatenated (first rows shifted), ``rs`` is copied
    one source chunk at a time through a :class:`RowWriter` (memory: about two chunks,
    whatever N is), so shards need not end on a row-chunk boundary of the result. Attributes
    are the first shard's, less ``drop_attrs``. The result is not yet finalized.
    """
    srcs = [open_store(sp) for sp in shards]
    for sp, src in zip(shards, srcs):
        if pending_chunks(src):
            raise RuntimeError(f"shard store {sp} has unwritten chunks {pending_chunks(src)}")
    first = srcs[0]
    layout = store_layout(first)
    per_row = {n: np.concatenate([np.asarray(checked(s, n)[:]) for s in srcs]) for n in _PER_ROW[layout] if n in first}
    per_text: dict[str, np.ndarray] = {}
    row0 = np.cumsum([0] + [int(s["rs"].shape[0]) for s in srcs])
    for n in _PER_TEXT[layout]:
        if n not in first:
            continue
        parts = [np.asarray(checked(s, n)[:]) for s in srcs]
        if n == "text_first_row":
            parts = [p + row0[i] for i, p in enumerate(parts)]
        per_text[n] = np.concatenate(parts)
    skip = set(drop_attrs) | {"format_version", "layout", "row_chunk", "rs_dtype"}
    attrs = {k: v for k, v in first.attrs.items() if k not in skip}
    g = create_from_arrays(path, layout, list(first["sublayer"][:]), int(first["rs"].shape[2]), per_row, per_text,
                           int(first["rs"].chunks[0]), int(first["rs"].chunks[2]), attrs,
                           str(first.attrs.get("rs_dtype", "float32")))
    writer = RowWriter(g)
    for src, r0 in zip(srcs, row0):
        rs = checked(src, "rs")
        c = int(rs.chunks[0])
        for s0 in range(0, rs.shape[0], c):
            writer.add(int(r0) + s0, np.asarray(rs[s0 : s0 + c]))
    writer.close()
    return g


def verify(path_or_group: str | Path | zarr.Group, check_finite: bool = True, workers: int | None = None) -> dict[str, int]:
    """Re-check a store: every chunk of every array is present, passes its checksum and (in a
    finalized store) is the chunk the manifest holds at its place, and (``check_finite``)
    ``rs`` holds no NaN/inf.

    Reads the store once, one chunk at a time in each of ``workers`` threads (default: the
    CPUs this process may use, at most 8). Raises :class:`StoreIntegrityError` naming the
    first bad chunk in grid order; returns ``{array name: chunks checked}``.
    """
    g = _as_group(path_or_group)
    name = _store_name(g)
    if int(g.attrs.get("format_version", 1)) < 2:
        raise StoreIntegrityError(
            f"{name}: format_version {g.attrs.get('format_version', 1)} stores carry no chunk checksums "
            "and cannot be verified; re-run the extraction to write a checksummed store"
        )
    manifest = read_manifest(g)
    counts = {}
    for arr_name, arr in sorted(g.arrays()):
        view = CheckedArray(arr, name, manifest, str(g.attrs.get("rs_dtype", "float32")))
        grid = _chunk_grid(arr)
        view.check_present(grid)

        def check(coords: tuple[int, ...], view: CheckedArray = view, arr_name: str = arr_name) -> None:
            block = view[view._region(coords)]
            if check_finite and arr_name == "rs" and not np.isfinite(block).all():
                raise StoreIntegrityError(f"{view._where(coords)} holds NaN or inf values")

        # chunks decode in parallel (zstd and CRC32C release the GIL); map() re-raises the
        # first bad chunk in grid order
        with ThreadPoolExecutor(max_workers=workers or max(1, min(8, len(os.sched_getaffinity(0))))) as pool:
            for _ in pool.map(check, grid):
                pass
        counts[arr_name] = len(grid)
    return counts


def dumps_attrs(attrs: dict[str, Any]) -> str:
    """Canonical JSON of attrs (used as a fingerprint for resuming)."""
    return json.dumps(attrs, sort_keys=True, default=str)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transformer_dynamics.store verify STORE [STORE ...]``: re-check finished stores.

    Prints one line per store; exit status 1 if any store is damaged.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "verify":
        print("usage: python -m transformer_dynamics.store verify STORE [STORE ...]", file=sys.stderr)
        return 2
    bad = 0
    for path in args[1:]:
        try:
            counts = verify(path)
            print(f"{path}: OK ({sum(counts.values())} chunks in {len(counts)} arrays checked)")
        except (StoreIntegrityError, FileNotFoundError) as exc:
            print(f"{path}: FAILED: {exc}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
