"""Extraction: token ids -> residual-stream captures -> Zarr store, chunk by chunk (§2.1).

One loop for every token layout: the paper's last token (``keep=None``) and any kept
positions per text (beyond the paper), into the one store format of :mod:`.store`. A run is
resumable: each row chunk is captured, checked for NaN/inf, written and only then marked
done, so a killed run restarted with the same inputs continues at the first unfinished chunk
and never recomputes a finished one. Batches are formed inside a capture group of about one
row chunk (length-sorted); with the last token a group is one chunk, so the numbers of a
chunk do not depend on how the samples were sharded (shards are whole chunks).

"The same inputs" is checked, not assumed: the partial store holds a fingerprint of what it
captures (a hash of the sample ids, corpus indices, token ids and texts), of the model (its
provenance: source, digest of the loaded weights, dtype, device, context), of the capture
points, of what else changes the numbers (the batching and the attention kernel: padding and
kernels change float reductions), of the package code and of every provenance attribute. A
partial store whose fingerprint differs is discarded, with a log line naming what changed,
and the extraction starts again.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import store
from .provenance import code_sha256, content_sha256
from .capture import auto_max_tokens, capture, check_finite
from .models.load import LoadedModel
from .progress import Progress
from .sublayers import sublayer_labels


def _fingerprint_parts(attrs: dict[str, Any], model_info: dict[str, Any], shape: tuple[int, ...]) -> dict[str, str]:
    """One hash per thing a resumed store must share with the run that started it."""
    parts = {k: v for k, v in attrs.items() if k not in {"complete", "fingerprint", "fingerprint_parts"}}
    parts.update({"(model)": model_info, "(rs shape)": list(shape)})
    return {k: content_sha256(store.dumps_attrs(v)) for k, v in sorted(parts.items())}


def _stale_reason(old: Any, parts: dict[str, str]) -> str | None:
    """Why the partial store ``old`` cannot be resumed with ``parts`` (None: it can)."""
    old_parts = old.attrs.get("fingerprint_parts")
    if not isinstance(old_parts, dict):
        return "it has no content fingerprint (written by an older version)"
    changed = sorted(k for k in set(parts) | set(old_parts) if parts.get(k) != old_parts.get(k))
    return f"it was started with different {', '.join(changed)}" if changed else None


def store_attrs(model: str, loaded: LoadedModel, condition: str, corpus: dict[str, Any], seed: int,
                **extra: Any) -> dict[str, Any]:
    """The provenance attributes of a store: model name and info, condition, corpus, seed,
    software versions, and ``extra`` (e.g. the shard's rows, the kept positions)."""
    from .models.load import software_versions

    return {"model": model, **{f"model_{k}": v for k, v in loaded.info.items()}, "condition": condition,
            "corpus": corpus, "seed": seed, "software": software_versions(), **extra}


def check_context(loaded: LoadedModel, token_ids: Sequence[Sequence[int]], sample_ids: Sequence[int]) -> None:
    """Refuse, naming the sample, a sequence longer than the model's context."""
    longest = max(len(t) for t in token_ids)
    context = loaded.info.get("max_positions")
    if context and longest > context:
        worst = int(np.argmax([len(t) for t in token_ids]))
        raise ValueError(
            f"sample {int(sample_ids[worst])} has {longest} tokens but model {loaded.info.get('source')} accepts "
            f"at most {context}: lower corpus.max_chars, or set corpus.long_texts: truncate"
        )


def with_capture_points(attrs: dict[str, Any] | None, token: str) -> dict[str, Any]:
    """A copy of ``attrs`` naming the capture points (§2.1) and which token(s) were captured."""
    return {**(attrs or {}), "capture_points": {
        "attn": "input of the pre-attention norm (residual entering the layer)",
        "mlp": "input of the pre-MLP norm (residual after attention was added)",
        "token": token,
    }}


def numerics(model: Any, max_tokens: int | None, max_batch: int | None) -> dict[str, Any]:
    """What changes the captured numbers besides the model and the inputs: the batching
    (resolved: ``batch_size: auto`` is the device's token budget) and the attention kernel.

    Part of a store's attrs, so of its resume fingerprint: a partial store is never resumed
    with another batching (the numbers differ in the last digits, ~1e-4 in float32).
    """
    device = next(model.parameters()).device.type
    batching = {"max_batch": int(max_batch)} if max_batch is not None else {
        "max_tokens": int(max_tokens or auto_max_tokens(device))}
    return {"batching": batching,
            "attn_implementation": str(getattr(getattr(model, "config", None), "_attn_implementation", None))}


def resolve_store_dtype(store_dtype: str, model_dtype: str) -> str:
    """The dtype ``rs`` is stored in: float32, or with ``store_dtype: model`` the model's dtype
    (float32 models stay float32)."""
    if store_dtype == "float32":
        return "float32"
    if store_dtype == "model":
        return model_dtype if model_dtype in store.RS_DTYPES else "float32"
    raise ValueError(f"extraction.store_dtype: {store_dtype!r}; use float32 or model")


def resume_or_create(work: Path, parts: dict[str, str], create: Callable[[], Any], log: Any) -> Any:
    """The partial store at ``work`` if it was started with the same fingerprint ``parts``
    (printing how many chunks are left), else a new one from ``create()`` (printing why the
    old one was discarded)."""
    if work.exists():
        try:
            old = store.open_store(work, mode="r+")
            reason = _stale_reason(old, parts)
            left = len(store.pending_chunks(old))
        except Exception as exc:  # unreadable partial store: start again
            reason = f"it cannot be read ({type(exc).__name__}: {exc})"
        if reason is None:
            print(f"resuming {work}: {left} chunks left", file=log)
            return old
        print(f"discarding the partial store {work}: {reason}; starting again", file=log)
    return create()


def capture_groups(n_rows: np.ndarray, row_chunk: int) -> list[tuple[int, int]]:
    """Texts ``[t0, t1)`` captured together: consecutive texts until they hold >= ``row_chunk``
    rows (a text with more rows forms its own group).

    With one row per text (the last token) a group is exactly one row chunk. The groups depend
    only on the layout, so a resumed extraction forms the same batches as an uninterrupted one
    and writes identical numbers.
    """
    groups, t0, rows = [], 0, 0
    for t, n in enumerate(n_rows):
        rows += int(n)
        if rows >= row_chunk:
            groups.append((t0, t + 1))
            t0, rows = t + 1, 0
    if t0 < len(n_rows):
        groups.append((t0, len(n_rows)))
    return groups


def resume_point(group: Any, first_row: np.ndarray, groups: list[tuple[int, int]]) -> tuple[int, int]:
    """``(first capture group to run, first row to write)`` of a (partial) store."""
    pending = store.pending_chunks(group)
    if not pending:
        return len(groups), int(group["rs"].shape[0])
    row = pending[0] * int(group["rs"].chunks[0])
    text = int(np.searchsorted(first_row, row, side="right") - 1)
    g = next(i for i, (t0, t1) in enumerate(groups) if t0 <= text < t1)
    return g, row


def extract_to_store(
    loaded: LoadedModel,
    path: str | Path,
    sample_ids: np.ndarray,
    corpus_index: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    keep: Sequence[np.ndarray] | None = None,
    texts: Sequence[str] | None = None,
    token_width: int | None = None,
    row_chunk: int = 100,
    unit_chunk: int = 64,
    max_tokens: int | None = None,
    max_batch: int | None = None,
    attrs: dict[str, Any] | None = None,
    work_path: str | Path | None = None,
    log: Any = None,
    overlap_writes: bool | None = None,
    store_dtype: str = "float32",
) -> dict[str, float]:
    """Capture the kept tokens of every sequence and write a complete store at ``path``.

    The one extraction loop: ``keep=None`` captures the last token of each text (the paper,
    store layout ``last``); ``keep[i]`` the positions of text ``i`` (layout ``positions``,
    beyond the paper). Texts are captured in groups of about ``row_chunk`` rows
    (:func:`capture_groups`; with the last token a group is one row chunk) and batched inside
    a group, so the numbers do not depend on how a run was interrupted; rows are written in
    whole row chunks, each marked done after its write (the unit of resume).

    Parameters
    ----------
    loaded : LoadedModel
    path : path of the store to produce.
    sample_ids, corpus_index : ndarray, shape (n,)
    token_ids : list of n token-id lists (BOS first).
    keep : None (the last token) or, per text, the ascending positions to capture.
    texts : the original texts, or None (shuffled condition).
    token_width : columns of ``token_ids`` in a ``last`` store (default: the longest sequence; not
        the model's context length, which is ``loaded.info["max_positions"]``).
    row_chunk, unit_chunk : chunk shape of ``rs`` (see :mod:`store`).
    max_tokens : padded tokens per batch (None: device default).
    max_batch : sequences per batch instead of a token budget.
    attrs : provenance written into the store; a resume requires identical attrs.
    work_path : write here and publish at ``path`` when complete (default ``path + '.partial'``;
        see :func:`publish`). A partial store with the same fingerprint is resumed.
    overlap_writes : write chunk k in a background thread while the next group is captured
        (default: when the model is not on the CPU).
    store_dtype : ``float32`` (default) or ``model``: the values in the model's dtype when it
        is bfloat16 or float16 (half the bytes, no value changed; see :func:`store.encode_rs`).

    Returns
    -------
    dict with ``seconds`` (capture and writes), ``tokens`` (run through the model), ``rows``,
    ``chunks_computed`` (capture groups run) and ``finalize_seconds`` (re-reading every chunk,
    see :func:`store.finalize`).
    """
    log = log if log is not None else sys.stderr
    path = Path(path)
    work = Path(work_path) if work_path is not None else path.with_name(path.name + ".partial")
    m = loaded.model
    labels = sublayer_labels(loaded.info["n_layers"])
    D = loaded.info["d_model"]
    width = token_width or max(len(t) for t in token_ids)
    check_context(loaded, token_ids, sample_ids)
    keep = None if keep is None else [np.asarray(k, dtype=np.int64) for k in keep]
    attrs = with_capture_points(attrs, "last real token" if keep is None else "the positions in the 'position' array")
    attrs["content_sha256"] = content_sha256(
        np.asarray(sample_ids, dtype=np.int64), np.asarray(corpus_index, dtype=np.int64),
        [[int(t) for t in seq] for seq in token_ids], None if texts is None else [str(t) for t in texts], int(width),
        None if keep is None else [k.tolist() for k in keep], int(row_chunk), int(unit_chunk),
    )
    attrs["code_sha256"] = code_sha256(["extraction"])
    attrs.update(numerics(m, max_tokens, max_batch))
    rs_dtype = resolve_store_dtype(store_dtype, str(loaded.info.get("dtype", "float32")))
    attrs["store_dtype"] = store_dtype
    first, n_rows = store.rows_per_text(keep, len(token_ids))
    shape = (int(n_rows.sum()), len(labels), D)
    parts = _fingerprint_parts(attrs, loaded.info, shape)
    fp = content_sha256(store.dumps_attrs(parts))

    group = resume_or_create(work, parts, lambda: store.create_store(
        work, labels, D, sample_ids, corpus_index, token_ids, keep, texts, token_width=width,
        row_chunk=row_chunk, unit_chunk=unit_chunk, attrs={**attrs, "fingerprint": fp, "fingerprint_parts": parts},
        rs_dtype=rs_dtype,
    ), log)
    groups = capture_groups(n_rows, int(group["rs"].chunks[0]))
    g0, row = resume_point(group, first, groups)
    c = int(group["rs"].chunks[0])
    if g0:  # said in the log and on the terminal (a resumed job is otherwise silent about it)
        note = f"resumed at chunk {row // c + 1} of {-(-shape[0] // c)}"
        print(note, file=log, flush=True)
        Progress(1, "chunk").say(note)
    writer = store.RowWriter(group, row)
    context = f"model {loaded.info.get('source')} ({loaded.info.get('dtype')})"
    todo = groups[g0:]
    bar = Progress(len(todo), "chunk")
    t0 = time.perf_counter()
    n_tok = n_kept = 0
    # On a GPU, chunk k is compressed and written by a background thread while the next group
    # is captured (the store write otherwise takes longer than the capture; docs/scale.md). At
    # most one write is in flight, so memory holds two groups. A chunk is marked done only
    # after its write completes, and an interrupt waits for the write in flight. On the CPU
    # the capture already uses every core: writes stay sequential.
    overlap = next(m.parameters()).device.type != "cpu" if overlap_writes is None else overlap_writes
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") as pool:
        pending: Future[Any] | None = None
        for k, (a, b) in enumerate(todo):
            seqs = [token_ids[i] for i in range(a, b)]
            out = np.empty((int(n_rows[a:b].sum()), len(labels), D), dtype=np.float32)
            local = first[a:b] - first[a]
            for idx, rs in capture(m, seqs, None if keep is None else keep[a:b], max_tokens=max_tokens,
                                   pad_id=loaded.pad_id, max_batch=max_batch):
                r = 0
                for i in idx:
                    n = int(n_rows[a + i])
                    out[local[i] : local[i] + n] = rs[r : r + n]
                    r += n
            check_finite(out, np.repeat(np.asarray(sample_ids[a:b]), n_rows[a:b]), labels, context)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.add, int(first[a]), out)
            if not overlap:
                pending.result()
            n_tok += sum(len(s) for s in seqs)
            n_kept += len(out)
            el = time.perf_counter() - t0
            print(f"chunk {k + 1}/{len(todo)} (texts {a}-{b - 1}, {n_kept} rows): {n_tok / el:.0f} tok/s",
                  file=log, flush=True)
            bar.update(k + 1, f"{n_tok / el:.0f} tok/s")
        if pending is not None:
            pending.result()
    writer.close()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.finalize(work)
    finalize_seconds = time.perf_counter() - t1
    if work != path:
        publish(work, path)
    return {"seconds": seconds, "tokens": float(n_tok), "rows": float(shape[0]), "chunks_computed": float(len(todo)),
            "finalize_seconds": finalize_seconds}


def publish(work: str | Path, path: str | Path) -> None:
    """Make the finished store ``work`` appear at ``path``, keeping ``work`` as a hard-linked twin.

    ``path`` is a workflow output: Snakemake deletes it when it marks the job incomplete
    (Ctrl-C to Snakemake alone lets the job finish, then ``--rerun-incomplete`` removes its
    output). The twin at ``work`` survives, so the rerun resumes with no chunk left to compute.
    Hard links cost no space; where they are not possible the files are copied.
    ``gather_shards`` removes the twins once the shards are gathered.
    """
    work, path = Path(work), Path(path)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    tmp = path.with_name(path.name + ".publishing")
    for p in (tmp, path):
        if p.exists():
            shutil.rmtree(p)
    shutil.copytree(work, tmp, copy_function=link)
    tmp.rename(path)


def gather_shards(shards: Sequence[str | Path], path: str | Path) -> None:
    """Concatenate complete shard stores of consecutive texts into one finalized store
    (:func:`store.gather`), then remove the shards' resume twins (see :func:`publish`)."""
    per_shard = ("complete", "fingerprint", "fingerprint_parts", "shard_rows", "content_sha256")
    store.gather(shards, path, drop_attrs=per_shard)
    store.finalize(path)
    for sp in shards:  # the shards' resume twins (see publish) are no longer needed
        twin = Path(sp).with_name(Path(sp).name + ".partial")
        if twin.exists():
            shutil.rmtree(twin)
