"""The paper's layers and their counterparts at the same fraction of depth (§2.8, Fig 4D).

Dependency-free on purpose: the figure code labels teleport layers with the paper's layer
without importing the perturbation machinery (torch, PCA), so a change there does not
re-run the figures.
"""

from __future__ import annotations

PAPER_N_LAYERS = 32  # Llama 3.1 8B
PAPER_LAYERS = (0, 7, 15, 23, 31)  # the teleport layers of the paper, of 32


def default_layers(n_layers: int) -> list[int]:
    """The paper's layers (0, 7, 15, 23, 31 of 32) at the same fractions of depth."""
    last = PAPER_N_LAYERS - 1
    return sorted({int(round(l * (n_layers - 1) / last)) for l in PAPER_LAYERS})


def paper_layer(layer: int, n_layers: int) -> int:
    """The paper's layer (of 32) at the same fraction of depth: one of 0/7/15/23/31 when close."""
    last = PAPER_N_LAYERS - 1
    frac = layer / max(1, n_layers - 1)
    best = min(PAPER_LAYERS, key=lambda p: abs(p / last - frac))
    return int(best) if abs(best / last - frac) * (n_layers - 1) <= 1 else int(round(frac * last))
