"""Which token positions are captured, and the position buckets the analyses are resolved by.

Beyond the paper: the paper (§2.1) records the residual stream at the LAST token of each
text only. With ``extraction.positions`` the workflow also records other positions, in a
position store (the ``positions`` layout of :mod:`transformer_dynamics.store`):

- ``last``: only the last token (the paper; no position store is made),
- ``all``: every token of every text,
- ``sample:K``: K positions per text drawn without replacement with the seed, always
  including the last one (texts with fewer eligible positions keep all of them).

Position 0 is BOS (:func:`transformer_dynamics.corpus.token_table` puts it first). Its
residual stream is the same vector for every text (same token, no context), so it is
excluded unless ``extraction.include_bos`` is set.

Analyses are then resolved by *position bucket* (log-spaced): ``0`` (BOS), ``1``, ``2-3``,
``4-7``, ``8-15``, ``16-31``, ``32+`` hold the tokens at those positions that are **not** the
last token of their text; ``last`` holds the last tokens (the paper's observations); ``all``
pools every stored token (tokens as observations). Keeping the last tokens out of the
positional buckets separates "where in the text" from "the end of the text".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .seeds import stream

POSITIONAL_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 1),
    ("1", 1, 2),
    ("2-3", 2, 4),
    ("4-7", 4, 8),
    ("8-15", 8, 16),
    ("16-31", 16, 32),
    ("32+", 32, None),
)
"""``(label, first position, end position (exclusive) or None)`` of each positional bucket."""

BUCKETS: tuple[str, ...] = ("all",) + tuple(b[0] for b in POSITIONAL_BUCKETS) + ("last",)
"""Every bucket label, in plotting order."""


@dataclass(frozen=True)
class PositionSpec:
    """A parsed ``extraction.positions`` value."""

    mode: str  # "last" | "all" | "sample"
    k: int | None = None

    def __str__(self) -> str:
        return f"sample:{self.k}" if self.mode == "sample" else self.mode


def parse_positions(spec: str) -> PositionSpec:
    """Parse ``last`` | ``all`` | ``sample:K`` (K >= 1), or raise a ValueError that says what is allowed."""
    s = str(spec).strip()
    if s in ("last", "all"):
        return PositionSpec(s)
    m = re.fullmatch(r"sample:(\d+)", s)
    if m and int(m.group(1)) >= 1:
        return PositionSpec("sample", int(m.group(1)))
    raise ValueError(f"extraction.positions: {spec!r} is not one of last, all, sample:K (K >= 1, e.g. sample:16)")


def select_positions(
    n_tokens: Sequence[int], sample_ids: Sequence[int], spec: str | PositionSpec, seed: int, include_bos: bool = False
) -> list[np.ndarray]:
    """The positions kept for each text, ascending.

    Parameters
    ----------
    n_tokens : tokens of each text (BOS included).
    sample_ids : stable sample id of each text: the draw of ``sample:K`` for a text depends
        only on ``(seed, sample id)``, never on sharding or on the other texts.
    spec : ``last`` | ``all`` | ``sample:K`` (see the module docstring).
    include_bos : keep position 0 (BOS) when it is eligible.
    """
    ps = spec if isinstance(spec, PositionSpec) else parse_positions(spec)
    out = []
    for n, sid in zip(n_tokens, sample_ids):
        n = int(n)
        last = n - 1
        first = 0 if include_bos else 1
        if ps.mode == "last" or n - first <= 1:
            out.append(np.array([last], dtype=np.int64))
            continue
        eligible = np.arange(first, last)  # every non-last position
        if ps.mode == "all" or len(eligible) <= ps.k - 1:
            keep = eligible
        else:
            rng = stream("positions.sample", seed, sid)
            keep = np.sort(rng.choice(eligible, size=ps.k - 1, replace=False))
        out.append(np.append(keep, last).astype(np.int64))
    return out


def bucket_of(position: np.ndarray, is_last: np.ndarray) -> np.ndarray:
    """The positional bucket label of every token (``last`` for last tokens)."""
    position = np.asarray(position)
    labels = np.full(position.shape, "", dtype=object)
    for label, lo, hi in POSITIONAL_BUCKETS:
        labels[(position >= lo) & (position < (hi if hi is not None else np.iinfo(np.int64).max))] = label
    labels[np.asarray(is_last, dtype=bool)] = "last"
    return labels


def bucket_rows(position: np.ndarray, is_last: np.ndarray, bucket: str, cap: int | None, seed: int) -> np.ndarray:
    """Token rows of ``bucket`` (sorted), at most ``cap`` of them drawn with the seed.

    The cap keeps every bucket's analyses at the cost (and the statistical power) of the
    paper's N observations; buckets with fewer tokens keep all of theirs.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"unknown position bucket {bucket!r}; buckets are {', '.join(BUCKETS)}")
    if bucket == "all":
        rows = np.arange(len(position))
    else:
        rows = np.flatnonzero(bucket_of(position, is_last) == bucket)
    if cap is not None and len(rows) > cap:
        rng = stream("positions.bucket", seed, BUCKETS.index(bucket))
        rows = np.sort(rng.choice(rows, size=cap, replace=False))
    return rows


def bucket_position_range(bucket: str) -> str:
    """Human-readable positions of a bucket (for tables and axis labels)."""
    if bucket == "all":
        return "all stored tokens"
    if bucket == "last":
        return "last token of each text"
    if bucket == "0":
        return "position 0 (BOS)"
    return f"positions {bucket} (not last)"
