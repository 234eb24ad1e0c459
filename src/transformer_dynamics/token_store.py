"""The position store: the residual stream at many token positions per text (beyond the paper).

A chunked Zarr v3 group that ``xarray.open_zarr`` opens, with one row per captured token::

    rs                 float32 (token, sublayer, unit)  shape (T, 2L, D)
    sample             int64   (token,)   sample id of the token's text (as in the last-token store)
    position           int32   (token,)   index of the token in its text (0 = BOS)
    token_id           int32   (token,)   the token the model saw there
    is_last            bool    (token,)   the token is the last of its text
    sublayer, layer, kind, unit            as in the last-token store (:mod:`.store`)
    text_sample        int64   (text,)    sample id of each text, in store order
    text_corpus_index  int64   (text,)
    text_n_tokens      int32   (text,)    tokens of the text (BOS included)
    text_first_row     int64   (text,)    first token row of the text (its rows are contiguous)
    text               str     (text,)    the original text (original condition only)
    chunk_done         bool    (token_chunk,)  extraction progress, one flag per token chunk

``rs`` is chunked ``(token_chunk, 2L, unit_chunk)``: a unit block over all tokens and a chunk
of tokens are both a set of whole chunks. Which tokens a store holds is decided before the
capture (:func:`transformer_dynamics.positions.select_positions`), so every per-token and
per-text array is written when the store is created and only ``rs`` is filled chunk by
chunk; an interrupted extraction resumes at the first token chunk not marked done. Integrity
is as for the last-token store: checksummed chunks, checked reads, :func:`store.verify`.

Analyses open it with :class:`transformer_dynamics.store.ActivationStore` (tokens are the
observations), optionally restricted to the rows of one position bucket
(:func:`bucket_store`).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr

from . import extraction, store
from .capture import capture_positions, check_finite
from .models import LoadedModel
from .positions import bucket_rows
from .progress import Progress
from .provenance import code_sha256, content_sha256
from .sublayers import sublayer_labels

FORMAT = "position-store-1"


def layout(keep: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(first_row, n_rows)`` of each text for the kept positions ``keep``."""
    n = np.array([len(k) for k in keep], dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    return first, n


def create_position_store(
    path: str | Path,
    sublayers: Sequence[str],
    d_model: int,
    sample_ids: np.ndarray,
    corpus_index: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    keep: Sequence[np.ndarray],
    texts: Sequence[str] | None = None,
    token_chunk: int = 1024,
    unit_chunk: int = 64,
    attrs: dict[str, Any] | None = None,
) -> zarr.Group:
    """Create a position store at ``path`` (overwriting it) with every array but ``rs`` written."""
    with store._writing():
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        g = zarr.open_group(str(path), mode="w", zarr_format=3)
        first, n_rows = layout(keep)
        T = int(n_rows.sum())
        n_sub = len(sublayers)
        c = max(1, min(token_chunk, T))
        n_chunks = -(-T // c)
        rs = store._new_array(
            g, "rs", (T, n_sub, d_model), ("token", "sublayer", "unit"),
            dtype="float32", chunks=(c, n_sub, min(unit_chunk, d_model)), fill_value=np.nan,
        )
        rs.attrs["coordinates"] = "sample position token_id layer kind"
        rs.attrs["long_name"] = "residual stream at the captured token positions"
        position = np.concatenate([np.asarray(k) for k in keep]).astype(np.int32)
        sample = np.repeat(np.asarray(sample_ids, dtype=np.int64), n_rows)
        tok = np.concatenate([np.asarray(t, dtype=np.int32)[np.asarray(k)] for t, k in zip(token_ids, keep)])
        lengths = np.array([len(t) for t in token_ids], dtype=np.int32)
        is_last = position == np.repeat(lengths - 1, n_rows)
        for name, data in (("sample", sample), ("position", position), ("token_id", tok), ("is_last", is_last)):
            store._new_array(g, name, data, ("token",), chunks=(c,))
        store.write_axis_coordinates(g, sublayers, d_model)
        store._new_array(g, "text_sample", np.asarray(sample_ids, dtype=np.int64), ("text",))
        store._new_array(g, "text_corpus_index", np.asarray(corpus_index, dtype=np.int64), ("text",))
        store._new_array(g, "text_n_tokens", lengths, ("text",))
        store._new_array(g, "text_first_row", first, ("text",))
        if texts is not None:
            store._new_array(g, "text", np.array(list(texts), dtype=str), ("text",), dtype=str)
        store._new_array(g, "chunk_done", (n_chunks,), ("token_chunk",), dtype="bool", chunks=(n_chunks,),
                         fill_value=False)
        g.attrs.update({"format_version": store.FORMAT_VERSION, "layout": FORMAT, "token_chunk": c,
                        **(attrs or {})})
        return g


def capture_groups(n_rows: np.ndarray, token_chunk: int) -> list[tuple[int, int]]:
    """Texts ``[t0, t1)`` captured together: consecutive texts until they hold >= ``token_chunk``
    rows (a text with more rows forms its own group).

    The groups depend only on the layout, so a resumed extraction forms the same batches as an
    uninterrupted one and writes identical numbers.
    """
    groups, t0, rows = [], 0, 0
    for t, n in enumerate(n_rows):
        rows += int(n)
        if rows >= token_chunk:
            groups.append((t0, t + 1))
            t0, rows = t + 1, 0
    if t0 < len(n_rows):
        groups.append((t0, len(n_rows)))
    return groups


class ChunkWriter:
    """Collects captured token rows in order and writes ``rs`` one whole token chunk at a time,
    marking each chunk done only after it is written.

    ``start`` is the first token row still to write (a multiple of the chunk size); rows
    before it that a resumed capture produces again are dropped.
    """

    def __init__(self, group: zarr.Group, start: int) -> None:
        self.group = group
        self.c = int(group["rs"].chunks[0])
        self.T = int(group["rs"].shape[0])
        self.buf: list[np.ndarray] = []
        self.buf_start = int(start)

    def add(self, row0: int, rows: np.ndarray) -> list[int]:
        """Add the captured rows ``row0 .. row0 + len(rows)``; return the chunks written."""
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
            raise RuntimeError(f"position store: rows {self.buf_start}..{self.T - 1} were never captured")

    def _flush(self) -> list[int]:
        """Write every chunk whose rows are all in the buffer (the last chunk ends at T)."""
        if not self.buf:
            return []
        data = np.concatenate(self.buf, axis=0) if len(self.buf) > 1 else self.buf[0]
        pos, written = 0, []
        with store._writing():
            rs, done = self.group["rs"], self.group["chunk_done"]
            while self.buf_start + pos < self.T:
                r0 = self.buf_start + pos
                n = min(self.T, r0 + self.c) - r0
                if len(data) - pos < n:
                    break
                rs[r0 : r0 + n] = data[pos : pos + n].astype(np.float32, copy=False)
                done[r0 // self.c] = True
                written.append(r0 // self.c)
                pos += n
        self.buf = [data[pos:]] if pos < len(data) else []
        self.buf_start += pos
        return written


def resume_point(group: zarr.Group, groups: list[tuple[int, int]]) -> tuple[int, int]:
    """``(first capture group to run, first token row to write)`` of a (partial) store."""
    pending = store.pending_chunks(group)
    if not pending:
        return len(groups), int(group["rs"].shape[0])
    c = int(group["rs"].chunks[0])
    row = pending[0] * c
    first = np.asarray(group["text_first_row"][:])
    text = int(np.searchsorted(first, row, side="right") - 1)
    g = next(i for i, (t0, t1) in enumerate(groups) if t0 <= text < t1)
    return g, row


def extract_positions_to_store(
    loaded: LoadedModel,
    path: str | Path,
    sample_ids: np.ndarray,
    corpus_index: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    keep: Sequence[np.ndarray],
    texts: Sequence[str] | None = None,
    token_chunk: int = 1024,
    unit_chunk: int = 64,
    max_tokens: int | None = None,
    max_batch: int | None = None,
    attrs: dict[str, Any] | None = None,
    work_path: str | Path | None = None,
    log: Any = None,
) -> dict[str, float]:
    """Capture the positions ``keep[i]`` of every sequence into a complete position store
    (:mod:`transformer_dynamics.token_store`) at ``path``; beyond the paper.

    Resumable like :func:`extract_to_store`: the partial store at ``work_path`` (default
    ``path + '.partial'``) carries a fingerprint of everything the numbers depend on (the
    kept positions included); a matching one resumes at its first unwritten token chunk.
    Texts are captured in groups of about ``token_chunk`` rows that depend only on the
    layout, so a resumed run writes the same numbers as an uninterrupted one.
    """
    log = log if log is not None else sys.stderr
    path = Path(path)
    work = Path(work_path) if work_path is not None else path.with_name(path.name + ".partial")
    m = loaded.model
    labels = sublayer_labels(loaded.info["n_layers"])
    extraction.check_context(loaded, token_ids, sample_ids)
    keep = [np.asarray(k, dtype=np.int64) for k in keep]
    attrs = extraction.with_capture_points(attrs, "the positions in the 'position' array")
    attrs["content_sha256"] = content_sha256(
        np.asarray(sample_ids, dtype=np.int64), np.asarray(corpus_index, dtype=np.int64),
        [[int(t) for t in seq] for seq in token_ids], None if texts is None else [str(t) for t in texts],
        [k.tolist() for k in keep], int(token_chunk), int(unit_chunk),
    )
    attrs["code_sha256"] = code_sha256(["token_store"])
    first, n_rows = layout(keep)
    shape = (int(n_rows.sum()), len(labels), loaded.info["d_model"])
    parts = extraction._fingerprint_parts(attrs, loaded.info, shape)
    fp = content_sha256(store.dumps_attrs(parts))

    group = extraction.resume_or_create(work, parts, lambda: create_position_store(
        work, labels, loaded.info["d_model"], sample_ids, corpus_index, token_ids, keep, texts,
        token_chunk=token_chunk, unit_chunk=unit_chunk, attrs={**attrs, "fingerprint": fp, "fingerprint_parts": parts},
    ), log)
    c = int(group["rs"].chunks[0])
    groups = capture_groups(n_rows, c)
    g0, row = resume_point(group, groups)
    writer = ChunkWriter(group, row)
    desc = f"model {loaded.info.get('source')} ({loaded.info.get('dtype')})"
    t0 = time.perf_counter()
    n_tok, n_kept = 0, 0
    bar = Progress(len(groups) - g0, "text group")
    for k, (a, b) in enumerate(groups[g0:]):
        seqs = [token_ids[i] for i in range(a, b)]
        out = np.empty((int(n_rows[a:b].sum()), len(labels), loaded.info["d_model"]), dtype=np.float32)
        local_first = first[a:b] - first[a]
        for idx, rs in capture_positions(m, seqs, keep[a:b], max_tokens=max_tokens, pad_id=loaded.pad_id,
                                         max_batch=max_batch):
            r = 0
            for i in idx:
                n = int(n_rows[a + i])
                out[local_first[i] : local_first[i] + n] = rs[r : r + n]
                r += n
        tok_sample = np.repeat(np.asarray(sample_ids[a:b]), n_rows[a:b])
        check_finite(out, tok_sample, labels, desc)
        writer.add(int(first[a]), out)
        n_tok += sum(len(s) for s in seqs)
        n_kept += len(out)
        el = time.perf_counter() - t0
        print(f"texts {a}-{b - 1} ({k + 1}/{len(groups) - g0}): {n_tok / el:.0f} tok/s through the model, "
              f"{n_kept} token rows kept", file=log, flush=True)
        bar.update(k + 1, f"{n_tok / el:.0f} tok/s")
    writer.close()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.finalize(work)
    finalize_seconds = time.perf_counter() - t1
    if work != path:
        extraction.publish(work, path)
    return {"seconds": seconds, "tokens": float(n_tok), "rows": float(shape[0]),
            "groups_computed": float(len(groups) - g0), "finalize_seconds": finalize_seconds}


def bucket_store(path: str | Path, bucket: str, cap: int | None, seed: int) -> store.ActivationStore:
    """The rows of position bucket ``bucket`` (at most ``cap``, drawn with ``seed``) as an
    :class:`~transformer_dynamics.store.ActivationStore`: every analysis runs on it unchanged."""
    g = store.open_store(path)
    position = np.asarray(store.checked(g, "position")[:])
    is_last = np.asarray(store.checked(g, "is_last")[:])
    return store.ActivationStore(g, bucket_rows(position, is_last, bucket, cap, seed))


def token_table(path: str | Path) -> dict[str, np.ndarray]:
    """The per-token coordinates of a position store (``sample``, ``position``, ``token_id``, ``is_last``)."""
    g = store.open_store(path)
    return {k: np.asarray(store.checked(g, k)[:]) for k in ("sample", "position", "token_id", "is_last")}
