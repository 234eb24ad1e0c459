"""The sublayer convention (§2.1): labels, parsing and row indices agree with the capture."""

from __future__ import annotations

import numpy as np
import pytest

from transformer_dynamics import sublayers as SL
from transformer_dynamics.capture import capture

from conftest import make_tiny_model, random_sequences


def test_labels_parse_back_to_their_rows():
    for n_layers in (1, 3, 30, 120):
        labels = SL.sublayer_labels(n_layers)
        assert len(labels) == SL.n_sublayers(n_layers)
        for row, label in enumerate(labels):
            layer, kind = SL.parse_sublayer(label)
            assert SL.sublayer_index(layer, kind) == row
        assert SL.layers_of(labels) == [r // 2 for r in range(len(labels))]
    assert SL.sublayer_labels(3)[:3] == ["L00.attn", "L00.mlp", "L01.attn"]
    assert SL.sublayer_labels(120)[-1] == "L119.mlp"
    assert SL.pre_attention_index(7) == 14 and SL.pre_mlp_index(7) == 15
    assert SL.kinds_of(["L03.mlp", "L10.attn"]) == ["mlp", "attn"]


@pytest.mark.parametrize("bad", ["L03", "3.mlp", "L03.ffn", "Lx.attn", "L03.attn.extra"])
def test_labels_outside_the_convention_are_refused(bad):
    with pytest.raises(ValueError, match="not a sublayer label"):
        SL.parse_sublayer(bad)
    with pytest.raises(ValueError):
        SL.sublayer_index(0, "ffn")


def test_the_pre_attention_row_is_where_an_edit_lands():
    # an edit of the residual entering layer 1 shows up first at that layer's pre-attention row
    model = make_tiny_model("llama", seed=1)
    seq = random_sequences(np.random.default_rng(0), 1)[0]
    target = np.full(32, 3.0, dtype=np.float32)
    import torch

    edited = next(iter(capture(model, [seq], edits={1: lambda h: torch.as_tensor(target).expand_as(h)})))[1][0]
    plain = next(iter(capture(model, [seq])))[1][0]
    row = SL.pre_attention_index(1)
    np.testing.assert_allclose(edited[row], target, atol=1e-6)
    np.testing.assert_array_equal(edited[:row], plain[:row])
    assert plain.shape[0] == SL.n_sublayers(3)


def test_hook_names_follow_transformer_lens():
    from transformer_dynamics.sublayers import hook_names

    assert hook_names(SL.sublayer_labels(12))[6:8] == ["blocks.3.hook_resid_pre", "blocks.3.hook_resid_mid"]
