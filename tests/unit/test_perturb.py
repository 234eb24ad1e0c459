"""§2.8 perturbations (Fig 4D): layers, teleport/noise/swap rows, edits through the hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformer_dynamics import pca as P
from transformer_dynamics import perturb
from transformer_dynamics.depth import default_layers

from conftest import make_tiny_model, random_sequences


def test_default_perturbation_layers():
    assert default_layers(32) == [0, 7, 15, 23, 31]
    assert default_layers(30) == [0, 7, 14, 22, 29]


def _pca_for(model, seqs):
    from transformer_dynamics.capture import capture

    rs = np.concatenate([r for _, r in capture(model, seqs)])
    return P.fit_pca([rs], 10), rs


def test_teleport_to_own_residual_reproduces_control_and_leaves_earlier_layers():
    model = make_tiny_model("llama", seed=21)
    rng = np.random.default_rng(4)
    prompt = random_sequences(rng, 1, lo=8, hi=9)[0]
    pca, _ = _pca_for(model, random_sequences(rng, 20))
    from transformer_dynamics.capture import capture

    control = next(iter(capture(model, [prompt])))[1][0]
    for layer in (0, 1, 2):
        same = perturb.run_edited(model, prompt, layer, np.stack([control[2 * layer]] * 3))
        np.testing.assert_allclose(same, np.broadcast_to(control, same.shape), atol=1e-5)
        rows = rng.normal(size=(4, 32)) * 3
        moved = perturb.run_edited(model, prompt, layer, rows)
        np.testing.assert_allclose(moved[:, : 2 * layer], np.broadcast_to(control[: 2 * layer], (4, 2 * layer, 32)), atol=1e-6)
        np.testing.assert_allclose(moved[:, 2 * layer], rows, atol=1e-5)
        m = perturb.trajectory_metrics(moved, control, pca, 2 * layer)
        assert m["sublayer_index"].iloc[0] == 2 * layer and (m["mse_full"] > 0).all()
        m0 = perturb.trajectory_metrics(same, control, pca, 2 * layer)
        assert m0["mse_full"].max() < 1e-9


def test_perturbation_with_padding_and_other_rows_in_batch():
    # the edit hits the last real token of each row even when rows are padded to different lengths
    from transformer_dynamics.capture import capture

    model = make_tiny_model("qwen2", seed=2)
    rng = np.random.default_rng(5)
    seqs = random_sequences(rng, 5)
    target = rng.normal(size=32).astype(np.float32)
    edits = {1: lambda h: torch.as_tensor(target).expand_as(h)}
    batched = np.concatenate([r[np.argsort(i)] for i, r in capture(model, seqs, max_batch=5, edits=edits)])
    order = np.concatenate([i for i, _ in capture(model, seqs, max_batch=5, edits=edits)])
    single = np.stack([next(iter(capture(model, [s], edits=edits)))[1][0] for s in seqs])
    np.testing.assert_allclose(batched, single[np.sort(order)], atol=1e-5)
    np.testing.assert_allclose(single[:, 2], np.broadcast_to(target, (5, 32)), atol=1e-6)


def test_noise_and_swap_rows():
    rng = np.random.default_rng(0)
    control = rng.normal(size=(6, 16))
    pca = P.fit_pca([rng.normal(size=(30, 6, 16))], 4)
    rows, mode, _ = perturb.perturbation_rows("noise", 1, control, pca, None, None, 3, 7, 0.5, seed=0)
    assert mode == "add" and rows.shape == (7, 16)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 0.5 * np.linalg.norm(control[2]))
    pool = rng.normal(size=(20, 16))
    rows, mode, _ = perturb.perturbation_rows("swap", 1, control, pca, None, pool, 3, 7, 0.5, seed=0)
    assert mode == "replace" and all(any(np.allclose(r, q) for q in pool) for r in rows)
    scores = rng.normal(size=(50, 2))
    rows, mode, Z = perturb.perturbation_rows("teleport", 1, control, pca, scores, None, 3, 7, 0.5, seed=0)
    assert rows.shape == (9, 16) and np.allclose(Z.min(0), scores.min(0)) and np.allclose(Z.max(0), scores.max(0))
    np.testing.assert_allclose(pca.transform(rows, 2), Z, atol=1e-8)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "gpt2"])
def test_cached_prefix_perturbation_equals_full_recomputation(arch):
    """Running only the edited last token against the prompt's cached keys/values gives the
    trajectories of running every full copy of the prompt (float32 rounding apart)."""
    model = make_tiny_model(arch, seed=8)
    rng = np.random.default_rng(9)
    prompt = random_sequences(rng, 1, lo=10, hi=11)[0]
    for layer in (0, 1, 2):
        for mode in ("replace", "add"):
            rows = rng.normal(size=(6, 32)) * 2
            full = perturb.run_edited(model, prompt, layer, rows, mode, reuse_prefix=False)
            cached = perturb.run_edited(model, prompt, layer, rows, mode, reuse_prefix=True)
            assert cached.shape == full.shape == (6, 6, 32)
            np.testing.assert_allclose(cached, full, rtol=0, atol=1e-5 * np.abs(full).max())
            assert np.abs(cached[:, 2 * layer:] - cached[0, 2 * layer:]).max() > 0  # the rows differ
