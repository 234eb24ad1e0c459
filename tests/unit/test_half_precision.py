"""bfloat16 / float16 capture against float32 captures of the same weights (issue: paper scale).

What the dtype implies. Let u be the unit roundoff: 2**-8 for bfloat16 (8 significand
bits), 2**-11 for float16. The first sublayer (the embedding, rounded once, times a
constant for Gemma) is within 2u of float32 relative to its norm. Every later sublayer adds
the rounding of that layer's weights and of its matmul outputs to an error that the
residual stream carries forward; on the tiny models here and on SmolLM2 (30 layers) the
worst sample's per-sublayer relative error ``||x_half - x_32|| / mean ||x_32||`` stays below
4u (measured maxima: 3.8u for SmolLM2 in bfloat16, 3.1u in float16; docs/scale.md), and the
test bounds it by 8u. A lower bound (u / 50 past the first layer) makes sure half precision
really ran: a capture that silently stayed float32 fails.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from transformer_dynamics.capture import NonFiniteActivationError, capture
from transformer_dynamics.extraction import extract_to_store
from transformer_dynamics.models import LoadedModel

from conftest import TINY_ARCHS, make_tiny_model, random_sequences

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def captured(model, seqs):
    out = {}
    for idx, rs in capture(model, seqs, max_batch=4):
        for i, r in zip(idx, rs):
            out[int(i)] = r
    return np.stack([out[i] for i in range(len(seqs))])


def relative_error(half: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per sublayer: the worst sample's error norm over the mean float32 norm."""
    assert half.dtype == np.float32  # the store is float32 whatever the model's dtype
    return np.linalg.norm(half - ref, axis=2).max(0) / np.linalg.norm(ref, axis=2).mean(0)


def check_dtype_bound(err: np.ndarray, dtype: torch.dtype) -> None:
    u = UNIT_ROUNDOFF[dtype]
    assert err[0] <= 2 * u, f"embedding sublayer error {err[0]:.3g} > 2u"
    assert err.max() <= 8 * u, f"max per-sublayer relative error {err.max():.3g} = {err.max() / u:.1f}u > 8u"
    assert err[2:].min() >= u / 50, f"error {err[2:].min():.3g} too small for {dtype}: half precision did not run"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_half_precision_capture_within_dtype_error(arch, dtype):
    model = make_tiny_model(arch, seed=11)
    seqs = random_sequences(np.random.default_rng(5), 8)
    ref = captured(model, seqs)
    half = captured(copy.deepcopy(model).to(dtype), seqs)
    check_dtype_bound(relative_error(half, ref), dtype)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_smollm2_half_precision_load_within_dtype_error(smollm2, dtype):
    """The user's path: load_model(..., dtype) of the embedded GGUF against the float32 load."""
    from transformer_dynamics.corpus import tokenize
    from transformer_dynamics.models import DTYPES, load_model

    texts = [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "Paris is the capital of France and its largest city.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
    ]
    seqs = tokenize(smollm2.tokenizer, texts)
    half_model = load_model("embedded", dtype, "cpu")
    assert next(half_model.model.parameters()).dtype == DTYPES[dtype]
    err = relative_error(captured(half_model.model, seqs), captured(smollm2.model, seqs))
    check_dtype_bound(err, DTYPES[dtype])


def test_float16_overflow_trips_the_nonfinite_guard(tmp_path):
    """Residual values past float16's 65504 become inf: extraction stops naming what overflowed."""
    model = make_tiny_model("llama", seed=3).to(torch.float16)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.copy_(emb / emb.abs().max() * 60000)  # representable, but attention's output pushes past 65504
        for layer in model.model.layers:  # attention adds ~1e4 to the residual
            layer.self_attn.v_proj.weight.mul_(1000)
            layer.self_attn.o_proj.weight.mul_(1000)
    seqs = random_sequences(np.random.default_rng(0), 6)
    with torch.no_grad():
        rs = captured(model, seqs)
    assert not np.isfinite(rs).all(), "the injected overflow did not overflow"
    loaded = LoadedModel(model, None, {"source": "tiny-fp16", "dtype": "float16", "n_layers": 3, "d_model": 32})
    out = tmp_path / "store.zarr"
    with pytest.raises(NonFiniteActivationError) as exc:
        extract_to_store(loaded, out, np.arange(6), np.arange(6), seqs, row_chunk=3, unit_chunk=16)
    msg = str(exc.value)
    assert "tiny-fp16 (float16)" in msg and "NaN/inf" in msg and "float32" in msg
    assert "samples [" in msg and "L0" in msg
    assert not out.exists()  # no store is finished from non-finite values
