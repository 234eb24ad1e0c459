"""The sublayer convention: one home for how the 2L capture points are named and indexed (§2.1).

Each decoder layer ``l`` contributes two rows to the residual-stream array ``rs (N, 2L, D)``:

- row ``2 l``, label ``Lxx.attn``: the residual entering layer ``l`` (input of its
  pre-attention norm, TransformerLens' ``resid_pre``);
- row ``2 l + 1``, label ``Lxx.mlp``: the residual after attention was added (input of the
  pre-MLP norm, ``resid_mid``).

Labels zero-pad the layer to at least two digits (``L03.mlp``; ``L100.attn`` for deep models).
Every module that needs a row index, a label, a layer or a kind asks this module instead of
re-deriving ``2 * layer`` arithmetic. Dependency-free on purpose, so the figure code can use
it without importing the store or the model code (and is not re-run when they change).
"""

from __future__ import annotations

from typing import Sequence

KINDS = ("attn", "mlp")  # order of the two capture points within a layer
PRE_ATTENTION, PRE_MLP = KINDS


def sublayer_labels(n_layers: int) -> list[str]:
    """``['L00.attn', 'L00.mlp', 'L01.attn', ...]`` for ``n_layers`` layers (2L labels)."""
    width = max(2, len(str(n_layers - 1)))
    return [f"L{l:0{width}d}.{k}" for l in range(n_layers) for k in KINDS]


def parse_sublayer(label: str) -> tuple[int, str]:
    """``'L03.mlp'`` -> ``(3, 'mlp')``; raises ValueError on a label outside the convention."""
    layer, sep, kind = label.partition(".")
    if not (sep and layer[:1] == "L" and layer[1:].isdigit() and kind in KINDS):
        raise ValueError(f"{label!r} is not a sublayer label (expected e.g. 'L03.attn' or 'L03.mlp')")
    return int(layer[1:]), kind


def layers_of(labels: Sequence[str]) -> list[int]:
    """The layer of each label."""
    return [parse_sublayer(s)[0] for s in labels]


def kinds_of(labels: Sequence[str]) -> list[str]:
    """The kind (``attn`` | ``mlp``) of each label."""
    return [parse_sublayer(s)[1] for s in labels]


def sublayer_index(layer: int, kind: str = PRE_ATTENTION) -> int:
    """Row of ``rs`` holding layer ``layer``'s capture point ``kind`` (``attn``: 2l, ``mlp``: 2l+1)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return 2 * int(layer) + KINDS.index(kind)


def pre_attention_index(layer: int) -> int:
    """Row of the residual entering layer ``layer`` (where perturbations are applied, §2.8)."""
    return sublayer_index(layer, PRE_ATTENTION)


def pre_mlp_index(layer: int) -> int:
    """Row of the residual entering layer ``layer``'s MLP block."""
    return sublayer_index(layer, PRE_MLP)


def hook_names(labels: Sequence[str]) -> list[str]:
    """TransformerLens' names of the capture points: ``L03.attn`` -> ``blocks.3.hook_resid_pre``
    (the residual entering layer 3), ``L03.mlp`` -> ``blocks.3.hook_resid_mid``."""
    return [f"blocks.{l}.hook_resid_{'pre' if k == PRE_ATTENTION else 'mid'}" for l, k in map(parse_sublayer, labels)]


def n_sublayers(n_layers: int) -> int:
    """Number of capture points of a model with ``n_layers`` layers (2L)."""
    return 2 * int(n_layers)
