"""Loading a causal LM and its tokenizer: torch and transformers (sources: see :mod:`transformer_dynamics.models`).

A model loads exactly or not at all: weights that transformers reports missing,
unexpected or mismatched stop the load, naming the file and the fix, and the digest of
the tensors actually loaded is its provenance (``weights_sha256``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..provenance import file_sha256
from ..seeds import torch_seed
from .errors import ModelLoadError
from .gguf import _cached_gguf_model, _cached_gguf_tokenizer, _gguf_metadata, _gguf_path, _is_gguf_source, gguf_sha256
from .weights import damaged_weight_file, from_pretrained_exactly, weights_digest, weights_files
from .shapes import _context_of, _has_tokenizer, check_source, hub_kwargs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def _load_directory(directory: Path, dtype: torch.dtype) -> Any:
    """A ``save_pretrained`` directory's model, loaded exactly (:func:`.weights.from_pretrained_exactly`);
    a damaged weight file is named (not only the reader's error)."""
    from transformers import AutoModelForCausalLM

    files = weights_files(directory)
    fix = "re-download the model or save it again with save_pretrained"
    damaged = damaged_weight_file(files)
    if damaged:
        raise ModelLoadError(f"{damaged[0]}: damaged weight file ({damaged[1]}); {fix}")
    try:
        return from_pretrained_exactly(
            lambda **kw: AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, **kw),
            f"{directory / 'config.json'} and its weight files ({', '.join(p.name for p in files) or 'none'})",
            "correct config.json (e.g. num_hidden_layers, hidden_size) or the weight files so that they agree",
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # e.g. safetensors' SafetensorError, which names no file
        names = ", ".join(str(p) for p in files) or f"no weight files in {directory}"
        raise ModelLoadError(f"{names}: cannot be read ({type(exc).__name__}: {exc}); {fix}") from exc


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
    torch.manual_seed(torch_seed("models.init", seed))  # a named stream (transformer_dynamics.seeds)
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
            model, info["weights_sha256"] = _cached_gguf_model(gguf, torch_dtype)
            info["weights_file_sha256"] = gguf_sha256(gguf)
        elif Path(source).is_dir():
            model = _load_directory(Path(source), torch_dtype)
            info["weights_sha256"] = weights_digest(model)
            info["weights_file_sha256"] = file_sha256(weights_files(Path(source)))
            info["config_sha256"] = file_sha256([Path(source) / "config.json"])
        else:
            model = from_pretrained_exactly(
                lambda **kw: AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **hub_kwargs(source), **kw),
                f"hub model '{source}'", "its config and weights disagree: pin another revision or report it upstream",
            )
            info["weights_sha256"] = weights_digest(model)
            info["hub_revision"] = getattr(model.config, "_commit_hash", None) or "unknown"
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
    """:func:`load_model` from a ``models.<name>`` config entry (schema defaults filled in),
    saying on the terminal what loads and how long it took (15-45 s for a first GGUF
    conversion, about a second from the cache)."""
    import time

    from ..progress import Progress

    say = Progress(1).say
    say(f"loading model {spec['source']} ({spec['dtype']}, device {spec['device']})")
    t0 = time.perf_counter()
    loaded = load_model(
        spec["source"], spec["dtype"], spec["device"],
        seed=spec["init_seed"], architecture=spec.get("architecture"), tokenizer=spec.get("tokenizer"),
    )
    say(f"model loaded in {time.perf_counter() - t0:.1f} s")
    return loaded


def software_versions() -> dict[str, str]:
    """Versions of the packages that determine captured numbers."""
    import numpy
    import transformers

    import transformer_dynamics

    from ..provenance import package_sha256

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "transformer_dynamics": transformer_dynamics.__version__,
        "transformer_dynamics_code_sha256": package_sha256(),
    }


