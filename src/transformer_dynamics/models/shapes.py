"""Model shapes read without loading weights: layers, width, context, heads, vocabulary,
parameter counts (the memory requests of model jobs), and the checks of a model source.

No torch or transformers at import time: ``rules/common.smk`` and :mod:`transformer_dynamics.jobs`
size every job from these functions while the DAG is built (a hub id's config is read
through transformers, imported then).
"""

from __future__ import annotations

import functools
import json
import os
import socket
from pathlib import Path
from typing import Any

from .errors import ModelLoadError
from .gguf import GGUF_ARCH_KEYS, GGUF_VOCAB_KEY, _gguf_metadata, _gguf_path, _is_gguf_source

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per parameter of each ``dtype`` config value (the names of :data:`.load.DTYPES`)."""


def _looks_like_path(source: str) -> bool:
    """A source written as a file system path (never to be sent to the hub as an id).

    Absolute, ``./``, ``../`` and ``~`` paths, ``.gguf`` files, anything with more than one
    ``/`` (hub ids are ``name`` or ``org/name``) and anything that exists locally.
    """
    if source in {"embedded", "random-init"}:
        return False
    return (
        source.startswith(("/", ".", "~")) or source.endswith(".gguf") or source.count("/") > 1
        or os.sep != "/" and os.sep in source or Path(source).exists()
    )


def check_source(source: str) -> None:
    """Fail early and clearly for a local model source that is not there.

    A path that does not exist says so (it is never retried as a hub id); a directory without
    ``config.json`` is not a ``save_pretrained`` directory.
    """
    if not _looks_like_path(source):
        return
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"model source '{source}': GGUF file {path} does not exist")
        return
    if not path.exists():
        raise ModelLoadError(
            f"model source '{source}': directory {path.resolve()} does not exist (a local path is "
            "never looked up on the hub; hub ids look like 'org/name')"
        )
    if not path.is_dir():
        raise ModelLoadError(f"model source '{source}': {path} is neither a directory nor a .gguf file")
    if not (path / "config.json").exists():
        raise ModelLoadError(f"model source '{source}': {path} has no config.json (not a save_pretrained directory)")


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    """Whether the hub answers: False when HF_HUB_OFFLINE is set or its host cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=5).close()
        return True
    except OSError:
        return False


def hub_kwargs(source: str) -> dict[str, Any]:
    """``from_pretrained`` options for a hub id: offline, use the local cache or fail at once.

    Without network, a model in the local HF cache is loaded with ``local_files_only=True``;
    one that is not cached fails now, instead of after the hub client's retries.
    """
    if _hub_reachable():
        return {}
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(source, "config.json"), str)
    except Exception:  # invalid repo id and the like
        cached = False
    if cached:
        return {"local_files_only": True}
    raise ModelLoadError(
        f"model source '{source}' is not a local path ({Path(source).resolve()} does not exist) and the hub "
        "cannot be reached (no network or HF_HUB_OFFLINE set), nor is it in the local HF cache. Use "
        "'embedded' for the offline default, a local directory written by save_pretrained, a .gguf file, "
        "or a hub id with network access."
    )



def _has_tokenizer(directory: Path) -> bool:
    return any((directory / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))



def _context_of(cfg: dict[str, Any]) -> int | None:
    cfg = cfg.get("text_config", cfg) if "text_config" in cfg and "max_position_embeddings" not in cfg else cfg
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        if isinstance(cfg.get(key), int) and cfg[key] > 0:
            return int(cfg[key])
    return None


def check_dims(info: dict[str, Any], override: dict[str, Any] | None, where: str = "models.<name>") -> None:
    """Raise if ``override`` (config keys ``n_layers``/``d_model``) disagrees with the model.

    ``info`` holds the model's true ``n_layers`` and ``d_model`` (from :func:`load_model` or
    the model's config); ``where`` names the config entry in the message.
    """
    for key, what in (("n_layers", "layers"), ("d_model", "units (width)")):
        if override and key in override and int(override[key]) != int(info[key]):
            raise ModelLoadError(
                f"config.yaml: {where}.{key}: {override[key]}, but model '{info.get('source')}' has "
                f"{info[key]} {what}; correct or remove {where}.{key}"
            )



def model_dims(
    source: str, override: dict[str, int] | None = None, where: str = "models.<name>", architecture: str | None = None
) -> tuple[int, int]:
    """``(n_layers, d_model)`` of a model source without loading its weights.

    Read from the GGUF header (embedded, random-init, .gguf), the ``architecture`` config
    (random-init), ``config.json`` (local dir) or the hub's config. ``override`` (keys
    ``n_layers``, ``d_model``) is for users who want no network access at DAG-build time: for
    a hub id with both keys it is used as is (and checked when the model is loaded,
    :func:`check_dims`); a local model is read anyway and an override that disagrees with it
    is an error naming the key (``where`` names the entry).
    """
    check_source(source)
    local = source in {"embedded", "random-init"} or _looks_like_path(source)
    if override and "n_layers" in override and "d_model" in override and not local:
        return int(override["n_layers"]), int(override["d_model"])
    try:
        cfg = model_config(source, architecture)
    except ModelLoadError as err:  # the config key first: what to edit
        raise ModelLoadError(f"{where}.source: {err}") from None
    n_layers, d_model = cfg["n_layers"], cfg["d_model"]
    check_dims({"source": source, "n_layers": n_layers, "d_model": d_model}, override, where)
    return n_layers, d_model


def model_context(source: str, architecture: str | None = None) -> int | None:
    """The longest sequence (tokens) the model accepts, from its config; None if it says nothing."""
    return model_config(source, architecture)["max_positions"]


def model_config(source: str, architecture: str | None = None) -> dict[str, Any]:
    """Shape of a model source, read without loading its weights.

    Returns ``n_layers``, ``d_model``, ``max_positions`` (context, or None) and, where the
    config says (else None), ``d_ff``, ``n_heads``, ``n_kv_heads``, ``head_dim``,
    ``vocab_size`` and ``tied`` (tied input/output embeddings). Read from the GGUF header
    (embedded, random-init, .gguf), the ``architecture`` config (random-init), ``config.json``
    (local dir) or the hub's config.
    """
    check_source(source)
    if source == "random-init" and architecture is not None:
        path = Path(architecture)
        path = path / "config.json" if path.is_dir() else path
        if not path.exists():
            raise ModelLoadError(f"architecture config {path} does not exist")
        cfg = json.loads(path.read_text())
    elif _is_gguf_source(source):
        path = _gguf_path(source)
        meta = _gguf_metadata(path, {GGUF_VOCAB_KEY})
        arch = meta["general.architecture"]
        missing = [f"{arch}.{k}" for k in GGUF_ARCH_KEYS[:2] if f"{arch}.{k}" not in meta]
        if missing:
            raise ModelLoadError(f"{path}: malformed GGUF file (no {', '.join(missing)} in the header)")
        get = lambda k: None if meta.get(f"{arch}.{k}") is None else int(meta[f"{arch}.{k}"])  # noqa: E731
        return {
            "n_layers": get("block_count"), "d_model": get("embedding_length"), "max_positions": get("context_length"),
            "d_ff": get("feed_forward_length"), "n_heads": get("attention.head_count"),
            "n_kv_heads": get("attention.head_count_kv"), "head_dim": None,
            "vocab_size": meta.get(GGUF_VOCAB_KEY), "tied": None,
        }
    elif Path(source).is_dir():
        cfg_path = Path(source) / "config.json"
        if not cfg_path.exists():
            raise ModelLoadError(f"{source} has no config.json: not a save_pretrained directory")
        cfg = json.loads(cfg_path.read_text())
    else:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(source, **hub_kwargs(source)).to_dict()
        except OSError as exc:
            raise ModelLoadError(
                f"could not read the config of '{source}' ({exc}); set models.<name>.n_layers and "
                "d_model in config.yaml to build the DAG offline"
            ) from exc
    cfg = cfg.get("text_config", cfg) if "num_hidden_layers" not in cfg and "n_layer" not in cfg else cfg
    get = lambda *keys: next((cfg[k] for k in keys if cfg.get(k) is not None), None)  # noqa: E731
    return {
        "n_layers": int(get("num_hidden_layers", "n_layer")),
        "d_model": int(get("hidden_size", "n_embd")),
        "max_positions": _context_of(cfg),
        "d_ff": get("intermediate_size", "n_inner"),
        "n_heads": get("num_attention_heads", "n_head"),
        "n_kv_heads": get("num_key_value_heads"),
        "head_dim": get("head_dim"),
        "vocab_size": get("vocab_size"),
        "tied": get("tie_word_embeddings"),
    }


def estimate_parameters(shape: dict[str, Any], vocab_size: int | None = None) -> int:
    """Parameter count of a pre-norm decoder (gated MLP when ``d_ff`` is known).

    ``vocab_size`` overrides the shape's (random-init pairs an architecture with another
    tokenizer). Exact for Llama-family configs (checked against instantiated models in the
    tests); elsewhere an estimate within a few percent, used to size memory requests.
    """
    L, D = int(shape["n_layers"]), int(shape["d_model"])
    V = int(vocab_size or shape.get("vocab_size") or 50_000)
    H = int(shape.get("n_heads") or max(1, D // 64))
    hd = int(shape.get("head_dim") or D // H)
    kv = int(shape.get("n_kv_heads") or H)
    F = int(shape.get("d_ff") or 4 * D)
    attn = D * H * hd + 2 * D * kv * hd + H * hd * D
    mlp = 3 * D * F
    per_layer = attn + mlp + 2 * D
    embeddings = V * D * (1 if shape.get("tied") else 2)
    return L * per_layer + embeddings + D


def spec_parameters(spec: dict[str, Any]) -> int:
    """Estimated parameter count of a ``models.<name>`` config entry (no weights loaded)."""
    arch = spec.get("architecture")
    shape = model_config(spec["source"], arch)
    vocab = None
    if spec["source"] == "random-init" and arch is not None and spec.get("tokenizer") is None:
        if not _has_tokenizer(Path(arch).parent):  # paired with the embedded tokenizer
            vocab = model_config("embedded")["vocab_size"]
    return estimate_parameters(shape, vocab)
