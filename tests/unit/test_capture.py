"""Capture is exact: hooks at the last token equal HF output_hidden_states (§2.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformer_dynamics.capture import (
    UnsupportedArchitectureError,
    capture,
    check_finite,
    NonFiniteActivationError,
    decoder_layers,
    get_arch,
    length_sorted_batches,
)
from transformer_dynamics.sublayers import sublayer_labels

from conftest import make_tiny_model, random_sequences


def reference_resid_pre(model, seq):
    """HF hidden_states[l] at the last token, for l = 0..L-1, run alone (no padding)."""
    with torch.no_grad():
        out = model(torch.tensor([seq]), output_hidden_states=True)
    return torch.stack([h[0, -1] for h in out.hidden_states[:-1]]).numpy()


def attention_block_outputs(model, seq):
    """What each layer's attention block adds to the residual stream, at the last token."""
    arch = get_arch(model)
    added = {}
    hooks = []
    for l, layer in enumerate(decoder_layers(model)):
        if arch.resid_mid == "pre_feedforward_layernorm":  # gemma2: the normed attention output
            mod = layer.post_attention_layernorm
            hooks.append(mod.register_forward_hook(lambda m, a, o, l=l: added.__setitem__(l, o[0, -1].clone())))
        else:
            mod = layer.self_attn if hasattr(layer, "self_attn") else layer.attn
            hooks.append(mod.register_forward_hook(lambda m, a, o, l=l: added.__setitem__(l, o[0][0, -1].clone())))
    with torch.no_grad():
        model(torch.tensor([seq]))
    for h in hooks:
        h.remove()
    return np.stack([added[l].numpy() for l in range(len(added))])


def captured(model, seqs, **kw):
    out = {}
    for idx, rs in capture(model, seqs, **kw):
        for i, r in zip(idx, rs):
            out[int(i)] = r
    return np.stack([out[i] for i in range(len(seqs))])


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("max_batch", [1, 4])
def test_capture_equals_output_hidden_states(tiny_model, padding_side, max_batch):
    rng = np.random.default_rng(12345)
    seqs = random_sequences(rng, 7)
    rs = captured(tiny_model, seqs, padding_side=padding_side, max_batch=max_batch)
    L = tiny_model.config.num_hidden_layers if hasattr(tiny_model.config, "num_hidden_layers") else tiny_model.config.n_layer
    assert rs.shape == (7, 2 * L, 32)
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(rs[i, 0::2], reference_resid_pre(tiny_model, s), atol=1e-5, rtol=0)
        np.testing.assert_allclose(
            rs[i, 1::2], rs[i, 0::2] + attention_block_outputs(tiny_model, s), atol=1e-5, rtol=0
        )


def test_token_budget_batches_match_single_rows(tiny_model):
    rng = np.random.default_rng(7)
    seqs = random_sequences(rng, 9)
    np.testing.assert_allclose(
        captured(tiny_model, seqs, max_tokens=40), captured(tiny_model, seqs, max_batch=1), atol=1e-5
    )


def test_length_sorted_batches_respect_budget():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 50, size=200)
    batches = length_sorted_batches(lengths, max_tokens=256, max_batch=16)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(200))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * lengths[b].max() <= 256


def test_sublayer_labels_interleave():
    assert sublayer_labels(3) == ["L00.attn", "L00.mlp", "L01.attn", "L01.mlp", "L02.attn", "L02.mlp"]


def test_unsupported_architecture_names_it():
    import transformers as tf

    m = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=4, intermediate_size=64))
    with pytest.raises(UnsupportedArchitectureError, match="gpt_neox.*parallel residual"):
        get_arch(m)
    m2 = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=4, intermediate_size=64,
                                                 use_parallel_residual=False)).eval()
    seqs = random_sequences(np.random.default_rng(0), 3, vocab=64)
    rs = captured(m2, seqs)
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(rs[i, 0::2], reference_resid_pre(m2, s), atol=1e-5)


def test_edit_replaces_residual_entering_a_layer():
    model = make_tiny_model("llama", seed=5)
    seqs = random_sequences(np.random.default_rng(1), 4)
    base = captured(model, seqs)
    target = np.random.default_rng(2).normal(size=32).astype(np.float32)
    edits = {1: lambda h: torch.as_tensor(target).expand_as(h)}
    edited = captured(model, seqs, edits=edits)
    np.testing.assert_allclose(edited[:, :2], base[:, :2], atol=1e-6)  # layer 0 untouched
    np.testing.assert_allclose(edited[:, 2], np.broadcast_to(target, (4, 32)), atol=1e-6)
    assert not np.allclose(edited[:, 3:], base[:, 3:])


def test_check_finite_names_samples_and_sublayers():
    rs = np.zeros((3, 4, 5), dtype=np.float32)
    rs[1, 2, 0] = np.nan
    rs[2, 3, 4] = np.inf
    with pytest.raises(NonFiniteActivationError, match=r"samples \[11, 12\].*'L01.attn', 'L01.mlp'.*float32"):
        check_finite(rs, np.array([10, 11, 12]), sublayer_labels(2), "model x (float16)")


@pytest.mark.real_model
def test_capture_exact_on_embedded_smollm2(smollm2):
    from transformer_dynamics.corpus import tokenize

    texts = [
        "The cat sat on the mat.",
        "Residual streams carry information from layer to layer in a transformer model.",
        "Paris is the capital of France.",
    ]
    seqs = tokenize(smollm2.tokenizer, texts)
    assert all(s[0] == smollm2.tokenizer.bos_token_id for s in seqs)
    rs = captured(smollm2.model, seqs, max_batch=3)
    assert rs.shape == (3, 60, 576)
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(rs[i, 0::2], reference_resid_pre(smollm2.model, s), atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(rs[i, 1::2], rs[i, 0::2] + attention_block_outputs(smollm2.model, s), atol=1e-4, rtol=1e-5)
