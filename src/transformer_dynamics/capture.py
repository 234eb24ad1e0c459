"""Residual-stream capture with forward hooks (§2.1), at the last token or at any kept positions.

For every layer l the paper records, at the LAST token of a sequence,

- ``h_l^Attn`` (``resid_pre``): the residual stream entering layer l, i.e. the input of the
  pre-attention norm, and
- ``h_l^MLP`` (``resid_mid``): the residual stream after the attention block has been added,
  i.e. the input of the pre-MLP norm,

interleaved into 2L "sublayers" ``L00.attn, L00.mlp, L01.attn, ...`` (the convention lives in
:mod:`transformer_dynamics.sublayers`).

Every supported architecture maps onto this through one row of :data:`ARCHITECTURES`: where
the decoder layers live and which module inside a layer receives ``resid_pre`` and
``resid_mid`` as its first input. Forward pre-hooks on those modules copy only the kept
tokens' rows (the last real token for the paper; :func:`capture` with ``keep`` for other
positions, beyond the paper) into a buffer; all hidden states are never materialised, the LM
head and the final norm never run (the forward pass is stopped after the last capture), and
batches are sorted by length so padding is small. Right padding needs no attention mask for
a causal model (a real token never attends to a later pad), so the fast causal kernels run.

The same hook machinery applies *edits* to the residual stream entering a layer at the last
token (used by :mod:`transformer_dynamics.perturb`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .sublayers import n_sublayers, pre_attention_index, pre_mlp_index


class UnsupportedArchitectureError(ValueError):
    """The model's residual stream cannot be mapped onto pre-attention / pre-MLP points."""


class NonFiniteActivationError(RuntimeError):
    """A captured value is NaN or infinite."""


@dataclass(frozen=True)
class ArchSpec:
    """Where the capture points of one architecture family live.

    Attributes
    ----------
    layers : str
        Attribute of the base model (``model.base_model``) holding the decoder layers.
    resid_pre : str
        Module of a layer whose first input is the residual stream entering the layer.
    resid_mid : str
        Module of a layer whose first input is the residual stream after attention was added.
    """

    layers: str
    resid_pre: str
    resid_mid: str


_LLAMA = ArchSpec("layers", "input_layernorm", "post_attention_layernorm")
# Gemma 2/3 normalise the attention output (post_attention_layernorm) before adding it, so the
# pre-MLP residual is the input of pre_feedforward_layernorm.
_GEMMA2 = ArchSpec("layers", "input_layernorm", "pre_feedforward_layernorm")

ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "mixtral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "phi3": _LLAMA,
    "gemma": _LLAMA,
    "olmo": _LLAMA,
    "granite": _LLAMA,
    "gemma2": _GEMMA2,
    "gemma3_text": _GEMMA2,
    "gpt2": ArchSpec("h", "ln_1", "ln_2"),
}

UNSUPPORTED: dict[str, str] = {
    "gpt_neox": "parallel residual: attention and MLP both read the layer's input, so there is no "
    "residual 'after attention' (set use_parallel_residual=False models are supported)",
    "gptj": "parallel residual: attention and MLP both read the layer's input",
    "phi": "parallel residual: attention and MLP both read the layer's input",
    "falcon": "parallel attention/MLP blocks",
    "olmo2": "post-norm blocks: the norms sit after attention and MLP, not before",
}


def get_arch(model: Any) -> ArchSpec:
    """The :class:`ArchSpec` of ``model`` (a HF causal LM), or a clear error naming it."""
    cfg = model.config
    mtype = getattr(cfg, "model_type", type(model).__name__)
    if mtype == "gpt_neox" and not getattr(cfg, "use_parallel_residual", True):
        return _LLAMA
    if mtype in ARCHITECTURES:
        return ARCHITECTURES[mtype]
    if mtype in UNSUPPORTED:
        raise UnsupportedArchitectureError(
            f"architecture '{mtype}' cannot be mapped onto the paper's capture points: {UNSUPPORTED[mtype]}"
        )
    raise UnsupportedArchitectureError(
        f"architecture '{mtype}' is not in transformer_dynamics.capture.ARCHITECTURES; add a row "
        "naming its decoder-layer list and the modules that receive the pre-attention and "
        "pre-MLP residual stream"
    )


def decoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    """The decoder layers of ``model`` in order."""
    return getattr(model.base_model, get_arch(model).layers)


def cache_argument(model: Any) -> str:
    """Name of the key/value cache argument of the base model's forward (``cache`` in
    transformers >= 5.2x, ``past_key_values`` before)."""
    import inspect

    params = inspect.signature(model.base_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _StopForward(Exception):
    """Raised after the last capture point: the rest of the network is not needed."""


Edit = Callable[[torch.Tensor], torch.Tensor]


class ResidualCapture:
    """Hooks that record ``resid_pre``/``resid_mid`` of every layer at one token per row.

    Use as a context manager around forward passes of ``model.base_model``; set
    :attr:`positions` (one token index per batch row) before each pass and read
    :attr:`buffer` (``(batch, 2L, D)``, on the model's device) after it.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    edits : dict, optional
        ``{layer: f}`` with ``f`` mapping the residual vectors entering ``layer`` at
        :attr:`positions`, shape ``(batch, D)``, to replacements. Applied before capture.
    stop_early : bool
        Stop the forward pass after the last layer's ``resid_mid`` is captured.
    """

    def __init__(self, model: Any, edits: dict[int, Edit] | None = None, stop_early: bool = True):
        self.model = model
        self.arch = get_arch(model)
        self.layers = list(decoder_layers(model))
        self.edits = dict(edits or {})
        self.stop_early = stop_early
        self.positions: torch.Tensor | None = None
        self.select: tuple[torch.Tensor, torch.Tensor] | None = None
        self.buffer: torch.Tensor | None = None
        self._handles: list[Any] = []

    @property
    def n_sublayers(self) -> int:
        return n_sublayers(len(self.layers))

    def _rows(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.select is not None:  # several tokens per row: (row, position) pairs
            return hidden[self.select]
        assert self.positions is not None
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), self.positions]

    def _make_capture_hook(self, slot: int, last: bool) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            hidden = args[0]
            rows = self._rows(hidden)
            if self.buffer is None:
                self.buffer = hidden.new_empty((rows.shape[0], self.n_sublayers, hidden.shape[-1]))
            self.buffer[:, slot] = rows
            if last and self.stop_early:
                raise _StopForward

        return hook

    def _make_edit_hook(self, edit: Edit) -> Callable[..., Any]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                hidden = args[0]
            else:
                hidden = kwargs["hidden_states"]
            hidden = hidden.clone()
            idx = torch.arange(hidden.shape[0], device=hidden.device)
            hidden[idx, self.positions] = edit(hidden[idx, self.positions]).to(hidden.dtype)
            if args:
                return (hidden,) + tuple(args[1:]), kwargs
            kwargs["hidden_states"] = hidden
            return args, kwargs

        return hook

    def __enter__(self) -> "ResidualCapture":
        n = len(self.layers)
        for l, layer in enumerate(self.layers):
            if l in self.edits:
                self._handles.append(
                    layer.register_forward_pre_hook(self._make_edit_hook(self.edits[l]), with_kwargs=True)
                )
            pre = getattr(layer, self.arch.resid_pre)
            mid = getattr(layer, self.arch.resid_mid)
            self._handles.append(pre.register_forward_pre_hook(self._make_capture_hook(pre_attention_index(l), False)))
            self._handles.append(mid.register_forward_pre_hook(self._make_capture_hook(pre_mlp_index(l), l == n - 1)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @torch.inference_mode()
    def run(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        select: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One forward pass of the base model; returns the ``(batch, 2L, D)`` captures.

        With ``past_key_values`` (a cache of the preceding tokens) only ``input_ids`` run.
        With ``select = (rows, cols)`` the tokens ``input_ids[rows, cols]`` are captured
        instead, ``(len(rows), 2L, D)`` (``positions`` still places the edits).
        """
        self.positions = positions
        self.select = select
        self.buffer = None
        kw = {} if past_key_values is None else {cache_argument(self.model): past_key_values}
        try:
            self.model.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=past_key_values is not None,
                **kw,
            )
        except _StopForward:
            pass
        assert self.buffer is not None
        return self.buffer


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, padding_side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Pad token-id lists into a batch.

    Returns ``input_ids (B, T)``, the index of the last real token per row, and for left
    padding an attention mask and position ids (positions count real tokens from 0, so left
    padding leaves every real token's position unchanged). Right padding returns ``None`` for
    both: under a causal mask no real token sees a later pad.
    """
    lengths = torch.tensor([len(s) for s in seqs])
    T = int(lengths.max())
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    if padding_side == "right":
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.as_tensor(s)
        return ids, lengths - 1, None, None
    if padding_side != "left":
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s) :] = torch.as_tensor(s)
        mask[i, T - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, torch.full((len(seqs),), T - 1), mask, pos


def length_sorted_batches(lengths: Sequence[int], max_tokens: int, max_batch: int = 256) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first).

    A batch holds at most ``max_batch`` rows and ``rows * longest <= max_tokens`` padded
    tokens (a single sequence longer than ``max_tokens`` gets a batch of its own).
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        L = int(lengths[i])
        new_longest = max(longest, L)
        if cur and (len(cur) + 1 > max_batch or (len(cur) + 1) * new_longest > max_tokens):
            batches.append(np.asarray(cur))
            cur, new_longest = [], L
        cur.append(int(i))
        longest = new_longest
    if cur:
        batches.append(np.asarray(cur))
    return batches


def auto_max_tokens(device: str) -> int:
    """Padded tokens per batch for ``batch_size: auto`` (measured with benchmarks/extract.py)."""
    return 65536 if device == "cuda" else 1024


def _batches(model: Any, token_ids: Sequence[Sequence[int]], max_tokens: int | None, max_batch: int | None
             ) -> tuple[torch.device, list[int], list[np.ndarray]]:
    """The model's device, the sequence lengths and the length-sorted batches: at most
    ``max_tokens`` padded tokens (default :func:`auto_max_tokens`) and 256 rows, or exactly up
    to ``max_batch`` sequences when it is given."""
    device = next(model.parameters()).device
    if max_batch is not None:
        budget, rows = 1 << 62, max_batch
    else:
        budget, rows = max_tokens or auto_max_tokens(device.type), 256
    lengths = [len(s) for s in token_ids]
    return device, lengths, length_sorted_batches(lengths, budget, rows)


def capture(
    model: Any,
    token_ids: Sequence[Sequence[int]],
    keep: Sequence[np.ndarray] | None = None,
    max_tokens: int | None = None,
    pad_id: int = 0,
    padding_side: str = "right",
    edits: dict[int, Edit] | None = None,
    progress: Callable[[int], None] | None = None,
    max_batch: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Capture the residual stream at the kept token positions of every sequence (§2.1).

    The one capture loop of the package: the paper's last token is ``keep=None`` (one row per
    sequence, its last real token); beyond the paper, ``keep[i]`` holds the positions of
    ``token_ids[i]`` to capture (0 = BOS), ascending and distinct. The same hooks copy the kept
    tokens' rows in the same forward pass, which stops after the last layer's pre-MLP capture;
    padded positions are never captured (left padding shifts the columns, not the positions).

    Batches are length-sorted and hold at most ``max_tokens`` padded tokens (default
    :func:`auto_max_tokens`) or, when ``max_batch`` is given, exactly up to ``max_batch``
    sequences. ``edits`` (``{layer: f}``) change the residual entering ``layer`` at each
    sequence's last token before anything is captured (:mod:`transformer_dynamics.perturb`).

    Yields
    ------
    ``(indices, rs)`` per batch: ``indices`` the positions in ``token_ids`` of the batch's
    sequences, ``rs`` float32 of shape ``(sum(n_kept(i) for i in indices), 2L, D)``, the rows
    of ``indices[0]`` first, each sequence's positions in the order of ``keep`` (one row per
    sequence when ``keep`` is None).
    """
    device, lengths, batches = _batches(model, token_ids, max_tokens, max_batch)
    if keep is not None:
        for i, k in enumerate(keep):
            k = np.asarray(k)
            if len(k) == 0 or k.min() < 0 or k.max() >= lengths[i] or np.any(np.diff(k) <= 0):
                raise ValueError(f"sequence {i}: positions must be ascending, distinct and in [0, {lengths[i]})")
    with ResidualCapture(model, edits=edits) as cap:
        for idx in batches:
            ids, pos, mask, pids = pad_batch([token_ids[i] for i in idx], pad_id, padding_side)
            select = None
            if keep is not None:
                T = ids.shape[1]
                rows = np.concatenate([np.full(len(keep[i]), r) for r, i in enumerate(idx)])
                shift = [0 if padding_side == "right" else T - lengths[i] for i in idx]
                cols = np.concatenate([np.asarray(keep[i]) + shift[r] for r, i in enumerate(idx)])
                select = (torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device))
            out = cap.run(
                ids.to(device),
                pos.to(device),
                None if mask is None else mask.to(device),
                None if pids is None else pids.to(device),
                select=select,
            )
            yield idx, out.float().cpu().numpy()
            if progress is not None:
                progress(int(sum(lengths[i] for i in idx)))


def check_finite(rs: np.ndarray, sample_ids: np.ndarray, labels: Sequence[str], context: str) -> None:
    """Raise :class:`NonFiniteActivationError` naming samples and sublayers with NaN/inf."""
    bad = ~np.isfinite(rs)
    if bad.any():
        s_idx, l_idx = np.nonzero(bad.any(axis=2))
        samples = sorted(set(int(sample_ids[i]) for i in s_idx))
        subl = sorted(set(labels[j] for j in l_idx), key=list(labels).index)
        raise NonFiniteActivationError(
            f"{context}: NaN/inf activations in samples {samples[:20]}"
            f"{' ...' if len(samples) > 20 else ''} at sublayers {subl[:10]}"
            f"{' ...' if len(subl) > 10 else ''}. Half precision overflows in some models: "
            "set the model's dtype to float32. Chunks written before this one are kept."
        )
