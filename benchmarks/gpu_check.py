"""GPU path check and timings: capture correctness on CUDA and the 8B-shaped model's throughput.

    python benchmarks/gpu_check.py [--device cuda] [--architecture configs/architectures/llama-3.1-8b.json]
                                   [--n 2048] [--lengths lengths.npy] [--out report.md]

Run on a machine with an NVIDIA GPU (it also runs on CPU with a small architecture, as a
smoke test). Prints, all measured in this run on this machine:

1. Correctness: tiny random models of several architectures captured on the device in
   float32, bfloat16 and float16 against float32 captures of the same weights on the CPU.
   Per-sublayer relative error (worst sample's error norm over the mean float32 norm) in
   units of the dtype's unit roundoff u, with the bounds of tests/unit/test_half_precision.py
   (first sublayer <= 2u, every sublayer <= 8u; float32 on the device <= 1e-5). The hook
   capture is also compared with HF ``output_hidden_states`` run on the device.
2. The 8B-shaped random-init model in bfloat16 on the device: load (initialisation) time
   and memory; capture throughput (tokens/s, model TFLOP/s, MFU against the dense bf16 peak
   measured by an 8192^3 matmul in the same run and against the datasheet 989 TFLOP/s) for
   several batch budgets, beside naive ``output_hidden_states`` (batches of 32 in corpus
   order); the full ``extract_to_store`` path (capture + chunks with checksums written to a
   Zarr store on local disk, float32 and in the model's dtype: store bytes per token).
3. PCA (global and per-sublayer spectra) at width 4096 with torch on the device against the
   numpy/LAPACK path on the CPU.

Sequence lengths are drawn from ``--lengths`` (a .npy of token counts of the real corpus),
else uniformly from 30-130 tokens. Token ids are random (the speed of a forward pass does
not depend on them).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from conftest import TINY_ARCHS, make_tiny_model, random_sequences  # noqa: E402

from transformer_dynamics import store  # noqa: E402
from transformer_dynamics.capture import capture, length_sorted_batches, pad_batch  # noqa: E402
from transformer_dynamics.extraction import extract_to_store  # noqa: E402
from transformer_dynamics.models import LoadedModel, init_random_model  # noqa: E402

UNIT = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
DATASHEET_BF16_TFLOPS = 989.0  # H100 SXM / H200 dense bfloat16


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def captured(model, seqs, **kw) -> np.ndarray:
    out = {}
    for idx, rs in capture(model, seqs, **kw):
        for i, r in zip(idx, rs):
            out[int(i)] = r
    return np.stack([out[i] for i in range(len(seqs))])


def rel_err(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x - ref, axis=2).max(0) / np.linalg.norm(ref, axis=2).mean(0)


def correctness(device: str) -> list[str]:
    lines = ["| architecture | dtype on device | first sublayer (u) | worst sublayer (u) | bound | vs output_hidden_states (max abs) | ok |",
             "|---|---|---|---|---|---|---|"]
    failures = []
    seqs = random_sequences(np.random.default_rng(5), 16)
    for arch in TINY_ARCHS:
        cpu = make_tiny_model(arch, seed=11)
        ref = captured(cpu, seqs, max_batch=4)
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            m = copy.deepcopy(cpu).to(device=device, dtype=dtype)
            got = captured(m, seqs, max_batch=4)
            err = rel_err(got, ref) / UNIT[dtype]
            if dtype == torch.float32:
                ok = err.max() * UNIT[dtype] <= 1e-5
                bound = "<=1e-5 relative"
            else:
                ok = err[0] <= 2 and err.max() <= 8 and err[2:].min() >= 1 / 50
                bound = "<=2u first, <=8u all"
            # hook capture vs HF output_hidden_states on the device (resid_pre of each layer)
            ids, pos, _, _ = pad_batch(seqs[:4], 0)
            with torch.inference_mode():
                hs = m(input_ids=ids.to(device), output_hidden_states=True).hidden_states
            n_layers = len(hs) - 1
            hf = torch.stack([h[torch.arange(4), pos.to(device)] for h in hs[:n_layers]], 1).float().cpu().numpy()
            ours = captured(m, seqs[:4], max_batch=4)[:, 0::2]
            hf_diff = float(np.abs(hf - ours).max())
            ok = ok and hf_diff <= max(UNIT[dtype], 1e-6) * float(np.abs(hf).max())
            lines.append(f"| {arch} | {str(dtype).split('.')[1]} | {err[0]:.2f} | {err.max():.2f} | {bound} | {hf_diff:.2g} | {'yes' if ok else 'NO'} |")
            if not ok:
                failures.append(f"{arch}/{dtype}")
    if failures:
        lines.append(f"\nFAILED: {failures}")
    return lines


def matmul_peak(device: str, dtype: torch.dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def model_flops(cfg, lengths) -> float:
    """Transformer-block FLOPs (2 x block parameters per token + causal attention scores)."""
    D, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * getattr(cfg, "head_dim", D // cfg.num_attention_heads)
    per_token = 2 * L * (2 * D * D + 2 * D * kv + 3 * D * I)
    attn = sum(2 * 2 * L * D * (t * (t + 1) / 2) for t in lengths)
    return per_token * sum(lengths) + attn


def timed_capture(model, seqs, device, **kw) -> float:
    list(capture(model, seqs[: min(64, len(seqs))], **kw))  # warm-up
    sync(device)
    t = time.perf_counter()
    for _ in capture(model, seqs, **kw):
        pass
    sync(device)
    return time.perf_counter() - t


def timed_naive(model, seqs, device, batch: int = 32) -> float:
    def run(part):
        for b0 in range(0, len(part), batch):
            ids, pos, _, _ = pad_batch(part[b0: b0 + batch], 0)
            with torch.inference_mode():
                hs = model(input_ids=ids.to(device), output_hidden_states=True).hidden_states
            torch.stack([h[torch.arange(len(pos)), pos.to(device)] for h in hs], 1).float().cpu()

    run(seqs[:batch])
    sync(device)
    t = time.perf_counter()
    run(seqs)
    sync(device)
    return time.perf_counter() - t


def throughput(args) -> list[str]:
    from transformers import AutoConfig

    device = args.device
    cfg = AutoConfig.from_pretrained(str(args.architecture))
    lines = []
    if device == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        torch.cuda.reset_peak_memory_stats()
    peak = matmul_peak(device, torch.bfloat16, 8192 if device == "cuda" else 1024)
    lines.append(f"bf16 matmul peak measured (8192^3): {peak:.0f} TFLOP/s")
    t = time.perf_counter()
    model = init_random_model(cfg, torch.bfloat16, seed=0, device=device).eval().requires_grad_(False)
    sync(device)
    t_init = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.parameters())
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    lines.append(f"random-init {n_params / 1e9:.2f} B parameters in bfloat16 on {device}: {t_init:.1f} s, "
                 f"device memory after init {mem:.1f} GiB")

    rng = np.random.default_rng(0)
    if args.lengths is not None:
        pool = np.load(args.lengths)
        lengths = rng.choice(pool, size=args.n)
    else:
        lengths = rng.integers(30, 131, size=args.n)
    seqs = [[1] + list(rng.integers(3, cfg.vocab_size, size=int(L) - 1)) for L in lengths]
    flops = model_flops(cfg, lengths.tolist())
    n_tok = int(lengths.sum())
    lines.append(f"N={args.n} sequences, {n_tok} tokens (mean {lengths.mean():.1f}), {flops / n_tok / 1e9:.1f} GFLOP/token")
    lines += ["", "| path | batches | seconds | tokens/s | TFLOP/s | MFU (measured peak) | MFU (989 TFLOP/s) | peak device GiB |",
              "|---|---|---|---|---|---|---|---|"]

    def row(name, secs, nb):
        tf = flops / secs / 1e12
        gib = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        lines.append(f"| {name} | {nb} | {secs:.2f} | {n_tok / secs:,.0f} | {tf:.0f} | {tf / peak:.0%} | "
                     f"{tf / DATASHEET_BF16_TFLOPS:.0%} | {gib:.1f} |")
        print(lines[-1], flush=True)

    settings = [("hooks, auto (65,536 tokens, <=256 rows)", dict()),
                ("hooks, 16,384 tokens", dict(max_tokens=16384)),
                ("hooks, batches of 64", dict(max_batch=64))]
    if args.quick:
        settings = [settings[0], settings[2]]
    for name, kw in settings:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        budget = kw.get("max_tokens") or (1 << 62 if "max_batch" in kw else (65536 if device == "cuda" else 1024))
        rows = kw.get("max_batch", 256)
        nb = len(length_sorted_batches(lengths.tolist(), budget, rows))
        row(name, timed_capture(model, seqs, device, **kw), nb)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    naive_n = min(len(seqs), 512)
    if not args.quick:
        secs = timed_naive(model, seqs[:naive_n], device)
        share = naive_n / len(seqs)
        row(f"output_hidden_states, batches of 32 in corpus order (first {naive_n}, scaled)", secs / share, -(-naive_n // 32))

    loaded = LoadedModel(model, None, {"n_layers": cfg.num_hidden_layers, "d_model": cfg.hidden_size,
                                       "source": "random-init", "dtype": "bfloat16", "device": device})
    raw_gb = args.n * 2 * cfg.num_hidden_layers * cfg.hidden_size * 4 / 1e9
    lines += ["", f"extract_to_store: capture + {raw_gb:.2f} GB of float32 chunks (zstd + CRC32C) on local disk, "
              "then finalize (every chunk re-read and checked)", "",
              "| chunk writes | sample_chunk | store dtype | capture + writes s | finalize s | total s | tokens/s "
              "| MFU (measured peak) | store bytes/token |",
              "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for overlap, sc, sd in ((False, 64, "float32"), (True, 64, "float32"), (True, 256, "float32"),
                                (True, 256, "model")):
            path = Path(tmp) / f"store-{overlap}-{sc}-{sd}.zarr"
            t = time.perf_counter()
            res = extract_to_store(loaded, path, np.arange(args.n), np.arange(args.n), seqs, row_chunk=sc,
                                   unit_chunk=64, attrs={"bench": "gpu_check"}, log=open(os.devnull, "w"),
                                   overlap_writes=overlap, store_dtype=sd)
            wall = time.perf_counter() - t
            nbytes = sum(f.stat().st_size for f in (path / "rs").rglob("*") if f.is_file())
            lines.append(f"| {'background thread' if overlap else 'sequential'} | {sc} | {store.open_store(path).attrs['rs_dtype']} "
                         f"| {res['seconds']:.2f} | {res['finalize_seconds']:.2f} | {wall:.2f} | {n_tok / wall:,.0f} "
                         f"| {flops / wall / 1e12 / peak:.0%} | {nbytes / args.n:,.0f} |")
            print(lines[-1], flush=True)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9
        lines.append(f"\nstore on disk {size:.2f} GB; verify of it:")
        for workers in (1, None):
            t = time.perf_counter()
            store.verify(path, workers=workers)
            secs = time.perf_counter() - t
            lines.append(f"  verify, {workers or 'default'} thread(s): {secs:.2f} s ({size / secs:.2f} GB/s compressed)")
            print(lines[-1], flush=True)
    return lines


def pca_timing(device: str, n: int = 1000, sublayers: int = 64, width: int = 4096) -> list[str]:
    """fit_pca's global PCA and per-sublayer spectra at the 8B width, on ``device`` (torch)
    and on the CPU path (numpy/LAPACK), on the same synthetic (n, 2L, D) activations."""
    from transformer_dynamics import pca
    from transformer_dynamics.sublayers import sublayer_labels

    rs = np.random.default_rng(0).normal(size=(n, sublayers, width)).astype(np.float32)
    chunks = [rs[i : i + 256] for i in range(0, n, 256)]
    labels = sublayer_labels(sublayers // 2)[:8]
    lines = ["", f"PCA at N={n}, 2L={sublayers}, D={width} (synthetic float32)", "",
             "| path | global PCA s | 8 sublayer spectra s (Gram route) |", "|---|---|---|"]
    for name, dev in ((f"torch on {device}", device), ("numpy/LAPACK on the CPU", None)):
        sync(device)
        t = time.perf_counter()
        pca.fit_pca(chunks, 100, dev)
        sync(device)
        g = time.perf_counter() - t
        t = time.perf_counter()
        pca.per_sublayer_spectra([c[:, :8] for c in chunks], labels, 100, n, dev)
        sync(device)
        lines.append(f"| {name} | {g:.2f} | {time.perf_counter() - t:.2f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--architecture", type=Path, default=REPO / "configs/architectures/llama-3.1-8b.json")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--lengths", type=Path, default=None)
    ap.add_argument("--tmp", default=None, help="folder for the temporary store (local disk)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--quick", action="store_true", help="two capture settings, no output_hidden_states baseline")
    args = ap.parse_args()
    report = []
    if not args.skip_correctness:
        report += ["## Capture correctness on " + args.device, ""] + correctness(args.device) + [""]
        print("\n".join(report), flush=True)
    report += ["## 8B-shaped throughput", ""] + throughput(args)
    report += ["", "## PCA on the device against the CPU path"] + pca_timing(args.device)
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if "FAILED" in text else 0


if __name__ == "__main__":
    raise SystemExit(main())
