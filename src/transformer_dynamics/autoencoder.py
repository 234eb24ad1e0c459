"""Compressing autoencoder (CAE) of residual-stream vectors (§2.7, Fig 3).

Every RS vector of every sublayer is one training sample (width D). The encoder's widths
follow the geometric progression ``d_i = D * r^i``, ``r = (d_bottleneck / D)^(1/(k-1))``,
i = 0..k-1, so ``d_0 = D`` and ``d_{k-1} = d_bottleneck``: the k "layers" of the paper are k
layers of units, joined by k-1 Linear maps; the decoder mirrors them. Every Linear is
followed by LayerNorm and ReLU except the one into the bottleneck and the decoder's output
layer (plain Linear). Adam (lr 1e-3), MSE, at most ``max_epochs`` epochs, early stopping on
the validation loss with ``patience``; the best-validation weights are kept.

Splits are by *sequence*: all 2L vectors of a sample are in the same split. Training
reads sample chunks from the Zarr store: held in memory when the store is small (default
SmolLM2 run: 138 MB), streamed every epoch otherwise, so memory is bounded by a chunk plus
a shuffle buffer whatever N is.

Input scaling (``scaling``): ``none`` (default) trains on the raw vectors, as the paper
describes no standardisation; ``global`` divides every vector by one scalar (the RMS of the
training vectors); ``unit`` z-scores each unit with training-set statistics. On SmolLM2,
``none`` and ``unit`` reach a flattened explained variance of 0.8-0.9 in 15 epochs while
``global`` stalls early (docs/results.md). Explained variance is always reported in the
original space.

Fit diagnostics (:func:`fit_diagnostics`, written beside the tables as diagnostics.json):
a *collapsed* fit (the bottleneck codes barely vary over samples), a fit *no better than
predicting the training mean vector*, one stopped by ``max_epochs`` while still improving
(*unconverged*), and loss spikes. Fig 3 and the findings table mark a fit that is not
usable instead of drawing it as a result.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .progress import Progress
from .seeds import stream, torch_seed


def layer_widths(d_in: int, d_bottleneck: int = 2, k: int = 10) -> list[int]:
    """``[d_0 = d_in, ..., d_{k-1} = d_bottleneck]`` in geometric progression (rounded)."""
    if k < 2:
        raise ValueError("k must be at least 2 (input and bottleneck)")
    r = (d_bottleneck / d_in) ** (1 / (k - 1))
    widths = [int(round(d_in * r**i)) for i in range(k)]
    widths[0], widths[-1] = d_in, d_bottleneck
    return [max(w, d_bottleneck) for w in widths]


def _stack(widths: Sequence[int], plain_last: bool) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if not (plain_last and i == len(widths) - 2):
            mods += [nn.LayerNorm(b), nn.ReLU()]
    return nn.Sequential(*mods)


class CompressingAutoencoder(nn.Module):
    """Encoder ``D -> ... -> d_bottleneck`` and mirrored decoder (§2.7)."""

    def __init__(self, d_in: int, d_bottleneck: int = 2, k: int = 10):
        super().__init__()
        self.widths = layer_widths(d_in, d_bottleneck, k)
        self.encoder = _stack(self.widths, plain_last=True)
        self.decoder = _stack(self.widths[::-1], plain_last=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@dataclass
class CAEConfig:
    d_bottleneck: int = 2
    k: int = 10
    lr: float = 1e-3
    max_epochs: int = 100
    patience: int = 10
    batch_size: int = 256
    scaling: str = "none"
    seed: int = 0


def split_samples(n: int, fractions: Sequence[float], seed: int,
                  groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sequence-level split of ``n`` rows into train/validation/test (sorted row indices).

    The split is drawn over texts (stream ``autoencoder.split``), never over rows: ``groups``
    (shape ``(n,)``) gives each row's text, and all rows of a text fall in the same part, so
    no text has tokens on both sides (a position bucket holds several tokens per text). With
    ``groups=None`` every row is its own text (the paper's last token; the same split as
    ``groups=np.arange(n)``).
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three numbers summing to 1, got {fractions}")
    inverse = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if len(inverse) != n:
        raise ValueError(f"groups has {len(inverse)} entries for {n} rows")
    n_texts = int(inverse.max()) + 1 if n else 0
    perm = stream("autoencoder.split", seed).permutation(n_texts)
    n_tr = int(round(fractions[0] * n_texts))
    n_va = int(round(fractions[1] * n_texts))
    if min(n_tr, n_va, n_texts - n_tr - n_va) < 1:
        raise ValueError(f"{n_texts} texts are too few for the CAE's splits {fractions} (autoencoder.split)")
    part = np.empty(n_texts, dtype=np.int8)
    part[perm[:n_tr]], part[perm[n_tr : n_tr + n_va]], part[perm[n_tr + n_va :]] = 0, 1, 2
    row_part = part[inverse]
    return {name: np.flatnonzero(row_part == k) for k, name in enumerate(("train", "validation", "test"))}


ChunkReader = Callable[..., Iterator[tuple[np.ndarray, np.ndarray]]]
"""``read(samples, rng=None)`` yields ``(sample_ids, vectors (n, S, D))``; the store's is
:meth:`transformer_dynamics.store.ActivationStore.sample_reader`."""


class Scaler:
    """Input scaling fitted on training vectors (see module docstring)."""

    def __init__(self, kind: str):
        if kind not in {"global", "unit", "none"}:
            raise ValueError(f"scaling must be global, unit or none, not {kind!r}")
        self.kind = kind
        self.shift: np.ndarray | float = 0.0
        self.scale: np.ndarray | float = 1.0

    def fit(self, blocks: Iterator[np.ndarray]) -> "Scaler":
        s1 = s2 = 0.0
        n = 0
        for X in blocks:
            X = X.reshape(-1, X.shape[-1]).astype(np.float64)
            s1 = s1 + X.sum(0)
            s2 = s2 + (X * X).sum(0)
            n += X.shape[0]
        if self.kind == "global":
            self.scale = float(math.sqrt(np.sum(s2) / (n * len(s2)))) or 1.0
        elif self.kind == "unit":
            mean = s1 / n
            sd = np.sqrt(np.maximum(s2 / n - mean**2, 0))
            sd[sd == 0] = 1.0
            self.shift, self.scale = mean.astype(np.float32), sd.astype(np.float32)
        return self

    def forward(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.shift) / self.scale).astype(np.float32)

    def backward(self, Z: np.ndarray) -> np.ndarray:
        return Z * self.scale + self.shift

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "shift": np.asarray(self.shift).tolist(), "scale": np.asarray(self.scale).tolist()}


def _batches(read: ChunkReader, samples: np.ndarray, scaler: Scaler, batch: int, rng: np.random.Generator | None,
             buffer_chunks: int = 4) -> Iterator[torch.Tensor]:
    """Minibatches of vectors; with ``rng``, chunk order and vectors within a buffer are shuffled."""
    buf: list[np.ndarray] = []

    def flush(buf: list[np.ndarray]) -> Iterator[torch.Tensor]:
        X = np.concatenate(buf)
        if rng is not None:
            X = X[rng.permutation(len(X))]
        for s in range(0, len(X), batch):
            yield torch.from_numpy(X[s : s + batch])

    for _, block in read(samples, rng):
        buf.append(scaler.forward(block.reshape(-1, block.shape[-1])))
        if len(buf) >= buffer_chunks:
            yield from flush(buf)
            buf = []
    if buf:
        yield from flush(buf)


def train_cae(
    read: ChunkReader,
    splits: dict[str, np.ndarray],
    d_in: int,
    cfg: CAEConfig,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[CompressingAutoencoder, Scaler, pd.DataFrame]:
    """Train with early stopping; returns the best-validation model, the scaler and the curve.

    The curve has one row per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``seconds``,
    ``best`` (whether this epoch's weights were kept).
    """
    from tqdm import tqdm

    torch.manual_seed(torch_seed("autoencoder.init", cfg.seed))
    rng = stream("autoencoder.batches", cfg.seed)
    scaler = Scaler(cfg.scaling).fit(b for _, b in read(splits["train"]))
    model = CompressingAutoencoder(d_in, cfg.d_bottleneck, cfg.k).to(device)
    # foreach: one fused update over all parameters instead of a Python loop over them
    # (bit-identical results, ~5 % of an epoch on 1 CPU thread)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    loss_fn = nn.MSELoss(reduction="sum")
    best, best_state, bad = math.inf, None, 0
    rows = []
    bar = tqdm(range(1, cfg.max_epochs + 1), desc="CAE", disable=not progress, mininterval=0)
    line = Progress(cfg.max_epochs, "epoch", upper_bound=True)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        tot, n = 0.0, 0
        for xb in _batches(read, splits["train"], scaler, cfg.batch_size, rng):
            xb = xb.to(device)
            opt.zero_grad()
            loss = loss_fn(model(xb), xb) / xb.numel()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * xb.numel()
            n += xb.numel()
        val = evaluate_loss(model, read, splits["validation"], scaler, device)
        improved = val < best
        if improved:
            best, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        rows.append({"epoch": epoch, "train_loss": tot / n, "val_loss": val,
                     "seconds": time.perf_counter() - t0, "best": improved})
        bar.set_postfix(train=f"{tot / n:.4g}", val=f"{val:.4g}")
        if progress:
            print(f"epoch {epoch}: train {tot / n:.5g}  val {val:.5g}{'  *' if improved else ''}", flush=True)
            line.update(epoch, f"{rows[-1]['seconds']:.1f} s/epoch, val {val:.4g}"
                        + (" (early stop)" if bad >= cfg.patience else ""), finished=bad >= cfg.patience)
        if bad >= cfg.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, scaler, pd.DataFrame(rows)


@torch.inference_mode()
def evaluate_loss(model: nn.Module, read: ChunkReader, samples: np.ndarray, scaler: Scaler, device: str) -> float:
    model.eval()
    tot, n = 0.0, 0
    for xb in _batches(read, samples, scaler, 4096, None):
        xb = xb.to(device)
        tot += float(((model(xb) - xb) ** 2).sum())
        n += xb.numel()
    return tot / n


@torch.inference_mode()
def encode_and_score(
    model: CompressingAutoencoder, scaler: Scaler, read: ChunkReader, samples: np.ndarray, device: str = "cpu"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bottleneck trajectories and per-sublayer reconstruction quality on ``samples`` (Fig 3D).

    Returns
    -------
    codes : ``sample``, ``sublayer_index``, ``z1``..``zb``
    ev : per ``sublayer_index``, all in the original space:

        ``explained_variance``
            ``1 - Var(x - x_hat) / Var(x)`` over all n*D entries of the sublayer's test vectors
            (sklearn's ``explained_variance_score`` on the flattened vectors). The variance
            includes the spread between units, so it measures how well the reconstruction
            reproduces the sublayer's vectors as a whole. The figure shows this one.
        ``r2_within``
            ``1 - SSE / SST`` with SST around each unit's mean at that sublayer: the variance
            *between samples* explained. A 2-unit bottleneck mostly encodes depth, so this is
            usually negative (worse than predicting the sublayer's mean vector).
    """
    codes = []
    acc: dict[str, Any] = {}
    n = 0
    for ids, block in read(samples):
        m, S, D = block.shape
        X = torch.from_numpy(scaler.forward(block.reshape(-1, D))).to(device)
        z = model.encoder(X)
        rec = scaler.backward(model.decoder(z).cpu().numpy().astype(np.float64)).reshape(m, S, D)
        orig = block.astype(np.float64)
        res = orig - rec
        parts = {
            "sse": (res**2).sum(axis=(0, 2)), "res_sum": res.sum(axis=(0, 2)),
            "x_sum_units": orig.sum(0), "x_sq": (orig**2).sum(axis=(0, 2)),
        }
        for k, v in parts.items():
            acc[k] = v if k not in acc else acc[k] + v
        n += m
        zc = z.cpu().numpy().reshape(m, S, -1)
        df = pd.DataFrame({"sample": np.repeat(ids, S), "sublayer_index": np.tile(np.arange(S), m)})
        for j in range(zc.shape[2]):
            df[f"z{j + 1}"] = zc[:, :, j].ravel()
        codes.append(df)
    D = acc["x_sum_units"].shape[1]
    entries = n * D
    var_x = acc["x_sq"] / entries - (acc["x_sum_units"].sum(1) / entries) ** 2
    var_res = acc["sse"] / entries - (acc["res_sum"] / entries) ** 2
    sst_within = acc["x_sq"] - (acc["x_sum_units"] ** 2).sum(axis=1) / n
    ev = pd.DataFrame({
        "sublayer_index": np.arange(len(var_x)),
        "explained_variance": 1 - var_res / var_x,
        "r2_within": 1 - acc["sse"] / sst_within,
        "mse": acc["sse"] / entries,
    })
    return pd.concat(codes, ignore_index=True), ev


def bottleneck_distances(codes: pd.DataFrame) -> pd.DataFrame:
    """Distance in the bottleneck between successive sublayers (Fig 3C): mean and sd over samples."""
    zcols = [c for c in codes.columns if c.startswith("z")]
    c = codes.sort_values(["sample", "sublayer_index"])
    Z = c[zcols].to_numpy().reshape(c["sample"].nunique(), -1, len(zcols))
    d = np.linalg.norm(np.diff(Z, axis=1), axis=2)
    return pd.DataFrame({"transition": np.arange(d.shape[1]), "distance_mean": d.mean(0), "distance_sd": d.std(0, ddof=1) if d.shape[0] > 1 else 0.0})


def mean_baseline_loss(read: ChunkReader, splits: dict[str, np.ndarray], scaler: Scaler) -> float:
    """Validation MSE per value (scaled space, as ``val_loss``) of predicting every vector by the
    training mean vector: the loss of a CAE that has learned nothing about its input."""
    s1, n = 0.0, 0
    for _, b in read(splits["train"]):
        X = scaler.forward(b.reshape(-1, b.shape[-1])).astype(np.float64)
        s1, n = s1 + X.sum(0), n + X.shape[0]
    mu = s1 / n
    sse, m = 0.0, 0
    for _, b in read(splits["validation"]):
        X = scaler.forward(b.reshape(-1, b.shape[-1])).astype(np.float64)
        sse, m = sse + float(((X - mu) ** 2).sum()), m + X.size
    return sse / m


def fit_diagnostics(curve: pd.DataFrame, codes: pd.DataFrame, max_epochs: int, patience: int,
                    collapse_floor: float = 0.01, spike_factor: float = 2.0,
                    mean_baseline: float | None = None) -> dict[str, Any]:
    """Whether a CAE fit can be read as a result (Fig 3).

    - ``sample_spread``: per sublayer, the spread of the test codes over samples
      (sqrt of the summed variances of the bottleneck units); the median over sublayers.
      ``total_spread``: the same over all test vectors (samples and sublayers); ``code_rms``.
      **collapsed** when ``sample_spread < collapse_floor * total_spread`` or
      ``total_spread < collapse_floor * code_rms``: the codes are (nearly) the same for every
      sample, or for every vector, so the trajectories of Fig 3B-C show the network, not the data.
    - **no better than the mean**: best validation loss >= ``mean_baseline`` (predicting
      every vector by the training mean, :func:`mean_baseline_loss`).
    - **unconverged**: training ran all ``max_epochs`` and the kept epoch is among the last
      ``patience`` ones (validation loss still falling).
    - ``loss_spikes``: epochs whose training loss exceeds ``spike_factor`` times the lowest
      training loss before them.

    ``status``: ``ok``, or the problems joined by ``; ``; ``usable``: neither collapsed nor
    no better than the mean.
    """
    zcols = [c for c in codes.columns if c.startswith("z")]
    Z = codes[zcols].to_numpy(dtype=np.float64)
    per_sub = codes.groupby("sublayer_index")[zcols].var(ddof=0).sum(axis=1) ** 0.5
    sample_spread = float(per_sub.median())
    total_spread = float(np.sqrt(Z.var(axis=0).sum()))
    rms = float(np.sqrt((Z**2).sum(axis=1).mean()))
    collapsed = bool(sample_spread < collapse_floor * total_spread or total_spread < collapse_floor * rms)
    tl = curve["train_loss"].to_numpy(dtype=float)
    spikes = [int(e) for e, x, lo in zip(curve["epoch"].iloc[1:], tl[1:], np.minimum.accumulate(tl)[:-1])
              if x > spike_factor * lo]
    best_i = int(np.nanargmin(curve["val_loss"].to_numpy(dtype=float)))
    best_epoch, best_val = int(curve["epoch"].iloc[best_i]), float(curve["val_loss"].iloc[best_i])
    ran = int(curve["epoch"].max())
    unconverged = bool(ran >= max_epochs and best_epoch > ran - patience)
    no_better = bool(mean_baseline is not None and best_val >= mean_baseline)
    problems = []
    if collapsed:
        problems.append(f"collapsed: bottleneck spread over samples {sample_spread:.2g} < {collapse_floor:g} x "
                        f"spread over all vectors {total_spread:.2g}" if sample_spread < collapse_floor * total_spread
                        else f"collapsed: bottleneck spread {total_spread:.2g} < {collapse_floor:g} x its RMS {rms:.2g}")
    if no_better:
        problems.append(f"validation loss {best_val:.3g} no better than predicting the mean vector ({mean_baseline:.3g})")
    if unconverged:
        problems.append(f"unconverged: validation loss still falling at epoch {ran} (max_epochs)")
    if spikes:
        problems.append("training-loss spikes at epoch " + ", ".join(map(str, spikes)))
    return {
        "status": "; ".join(problems) if problems else "ok",
        "usable": not (collapsed or no_better),
        "collapsed": collapsed, "no_better_than_mean": no_better, "unconverged": unconverged,
        "loss_spikes": spikes, "sample_spread": sample_spread, "total_spread": total_spread, "code_rms": rms,
        "collapse_floor": collapse_floor, "spike_factor": spike_factor, "best_epoch": best_epoch,
        "best_val_loss": best_val, "mean_baseline_val_loss": mean_baseline, "epochs_run": ran,
        "max_epochs": max_epochs, "patience": patience,
    }


def checkpoint(model: CompressingAutoencoder, scaler: Scaler, cfg: CAEConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild the model: weights, widths, scaler, config."""
    return {"state_dict": model.state_dict(), "widths": model.widths, "scaler": scaler.state(),
            "config": asdict(cfg), **extra}


def cae_config(settings: dict[str, Any], seed: int) -> CAEConfig:
    """The :class:`CAEConfig` of config ``autoencoder:`` (defaults filled in) and the seed."""
    return CAEConfig(d_bottleneck=settings["d_bottleneck"], k=settings["k"], lr=settings["lr"],
                     max_epochs=settings["max_epochs"], patience=settings["patience"],
                     batch_size=settings["batch_size"], scaling=settings["scaling"], seed=seed)


def train_and_evaluate(
    read: ChunkReader,
    n_samples: int,
    d_model: int,
    settings: dict[str, Any],
    seed: int,
    device: str = "cpu",
    extra: dict[str, Any] | None = None,
    groups: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The whole of §2.7 / Fig 3 on one view: split by sequence, train, encode the test set.

    Parameters
    ----------
    read : the store's sample reader (:meth:`~transformer_dynamics.store.ActivationStore.sample_reader`)
    settings : config ``autoencoder:`` (``k``, ``d_bottleneck``, ``split``, ``lr``,
        ``max_epochs``, ``patience``, ``batch_size``, ``scaling``), defaults filled in
    extra : saved in the checkpoint beside the splits (e.g. the store's path)
    groups : the text of each of the ``n_samples`` rows (:meth:`ActivationStore.row_texts`);
        the split keeps a text's rows together (:func:`split_samples`)

    Returns
    -------
    The checkpoint (:func:`checkpoint`, with the splits) and the tables ``curve`` (training
    curve), ``codes`` (test-set bottleneck codes), ``explained`` (explained variance per
    sublayer) and ``distances`` (:func:`bottleneck_distances`), and ``diagnostics``
    (:func:`fit_diagnostics`, a dict).
    """
    cfg = cae_config(settings, seed)
    splits = split_samples(n_samples, settings["split"], seed, groups)
    model, scaler, curve = train_cae(read, splits, d_model, cfg, device)
    codes, explained = encode_and_score(model, scaler, read, splits["test"], device)
    tables = {"curve": curve, "codes": codes, "explained": explained, "distances": bottleneck_distances(codes)}
    diag = fit_diagnostics(curve, codes, cfg.max_epochs, cfg.patience, settings.get("collapse_floor", 0.01),
                           settings.get("spike_factor", 2.0), mean_baseline_loss(read, splits, scaler))
    tables["diagnostics"] = diag
    saved = checkpoint(model.cpu(), scaler, cfg, {"splits": {k: v.tolist() for k, v in splits.items()}, **(extra or {})})
    return saved, tables
