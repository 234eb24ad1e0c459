"""Extraction throughput: hook capture vs output_hidden_states, as a fraction of GEMM peak.

    python benchmarks/extract.py [--n 256] [--threads 2] [--positions sample:4 sample:16 all]

Prints one table, all measured in this run on this machine: float32 GEMM peak, then
sequences/s, tokens/s and model GFLOP/s for
  - hooks: transformer_dynamics capture (forward hooks, last token only, no LM head,
    stops after the last capture point, length-sorted batches, token budget),
  - hidden_states/sorted: HF output_hidden_states with the LM head on the same batches,
  - hidden_states/naive: output_hidden_states, batches of 32 in corpus order, right padding.
With ``--positions``: the hook capture of several positions per text (beyond the paper;
:func:`capture` with ``keep`` from :func:`select_positions`), each beside the last-token hooks,
alternating runs, with its slowdown (target: <= ~10 % for K <= 16).
Model FLOPs count the transformer blocks only (2 x parameters of the blocks per token plus
causal attention scores), the same useful work for every row.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from transformer_dynamics import corpus
from transformer_dynamics.capture import capture, length_sorted_batches, pad_batch
from transformer_dynamics.models import load_model


def gemm_peak(threads: int, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best / 1e9


def model_gemm_peak(cfg, tokens: int = 4096, reps: int = 10) -> float:
    """Best GFLOP/s of the GEMM shapes the model runs (tokens x D @ D x {D, kv, I})."""
    D, I = cfg.hidden_size, cfg.intermediate_size
    best = 0.0
    x = torch.randn(tokens, D)
    for out in (D, I):
        w = torch.randn(D, out)
        for _ in range(3):
            x @ w
        for _ in range(reps):
            t = time.perf_counter()
            x @ w
            best = max(best, 2 * tokens * D * out / (time.perf_counter() - t))
    return best / 1e9


def block_flops(cfg, lengths) -> float:
    D, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (D // cfg.num_attention_heads)
    per_token = 2 * L * (2 * D * D + 2 * D * kv + 3 * D * I)
    attn = sum(2 * 2 * L * D * (t * (t + 1) / 2) for t in lengths)  # QK^T and AV, causal
    return per_token * sum(lengths) + attn


def timed(fn, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


KINDS = (
    ("GEMM (linear layers)", ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul", "aten::bmm")),
    ("attention (SDPA)", ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention_for_cpu",
                          "aten::_scaled_dot_product_attention_math")),
    ("norms (RMSNorm: pow, mean, rsqrt, mul)", ("aten::pow", "aten::mean", "aten::rsqrt")),
    ("activation (SiLU)", ("aten::silu",)),
    ("elementwise mul/add", ("aten::mul", "aten::add", "aten::add_")),
    ("rotary (cat, neg, slice, cos/sin)", ("aten::cat", "aten::neg", "aten::cos", "aten::sin")),
    ("capture copies (index, copy_)", ("aten::index", "aten::copy_", "aten::index_put_")),
    ("embedding", ("aten::embedding",)),
)


def profile(fn, flops: float) -> None:
    """Self CPU time of the capture by kind of op (torch.profiler), and the GEMM's own GFLOP/s."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    fn()
    t = time.perf_counter()
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    wall = time.perf_counter() - t
    stats = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = sum(stats.values())
    print(f"profiled capture: {wall:.2f} s wall under the profiler, {total:.2f} s of op self-time")
    print(f"{'kind of op':<42}{'seconds':>9}{'share':>8}")
    seen = set()
    for name, ops in KINDS:
        sec = sum(stats.get(o, 0.0) for o in ops)
        seen |= set(ops)
        print(f"{name:<42}{sec:>9.2f}{100 * sec / total:>7.1f}%")
    rest = sorted(((v, k) for k, v in stats.items() if k not in seen), reverse=True)
    print(f"{'other ops':<42}{sum(v for v, _ in rest):>9.2f}{100 * sum(v for v, _ in rest) / total:>7.1f}%"
          f"  (largest: {', '.join(f'{k} {v:.2f}s' for v, k in rest[:4])})")
    gemm = sum(stats.get(o, 0.0) for o in KINDS[0][1])
    print(f"model FLOPs / GEMM self-time: {flops / max(gemm, 1e-9) / 1e9:.1f} GFLOP/s (attention FLOPs included)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-tokens", type=int, default=None, help="token budget per batch (default: auto)")
    ap.add_argument("--only-hooks", action="store_true", help="skip the output_hidden_states baselines")
    ap.add_argument("--positions", nargs="*", default=[], help="position specs to time beside the last token")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--profile", action="store_true",
                    help="profile the hook capture (torch.profiler) and print where its time goes, by kind of op")
    ap.add_argument("--budgets", nargs="*", type=int, default=[],
                    help="token budgets per batch to time beside the default (hooks only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model("embedded", "float32", "cpu")
    m, tok = loaded.model, loaded.tokenizer
    c = corpus.load_wiki_offline()
    table = corpus.sample_table(c, 100, 500, args.n, seed=0)
    seqs = corpus.tokenize(tok, list(table["text"]))
    lengths = [len(s) for s in seqs]
    flops = block_flops(m.config, lengths)
    pad = tok.pad_token_id or 0

    def hooks():
        for _ in capture(m, seqs, pad_id=pad, max_tokens=args.max_tokens):
            pass

    def hidden(batches):
        with torch.inference_mode():
            for idx in batches:
                ids, pos, _, _ = pad_batch([seqs[i] for i in idx], pad)
                mask = (torch.arange(ids.shape[1])[None] <= pos[:, None]).long()
                m(input_ids=ids, attention_mask=mask, output_hidden_states=True)

    sorted_batches = length_sorted_batches(lengths, 4096)
    naive_batches = [np.arange(i, min(len(seqs), i + 32)) for i in range(0, len(seqs), 32)]
    peak = gemm_peak(args.threads)
    mpeak = model_gemm_peak(m.config)
    if args.profile:
        profile(hooks, flops)
        return
    if args.budgets:
        hooks()
        print(f"SmolLM2-135M float32, {args.n} sequences, {sum(lengths)} tokens, {args.threads} threads; best of 3, alternating")
        best = {b: float("inf") for b in args.budgets}
        for _ in range(3):
            for b in args.budgets:
                best[b] = min(best[b], timed(lambda b=b: [None for _ in capture(m, seqs, pad_id=pad, max_tokens=b)], 1))
        peak = gemm_peak(args.threads)
        print(f"float32 GEMM peak (square 2048^3): {peak:.1f} GFLOP/s")
        print(f"{'tokens/batch':>12}{'seconds':>9}{'tok/s':>8}{'GFLOP/s':>9}{'% peak':>8}")
        for b, sec in best.items():
            print(f"{b:>12}{sec:>9.2f}{sum(lengths) / sec:>8.0f}{flops / sec / 1e9:>9.1f}{100 * flops / sec / 1e9 / peak:>7.0f}%")
        return
    if args.positions:
        from transformer_dynamics.positions import select_positions

        keeps = {p: select_positions(lengths, np.arange(len(seqs)), p, seed=0) for p in args.positions}

        def positions(keep):
            def run():
                for _ in capture(m, seqs, keep, pad_id=pad, max_tokens=args.max_tokens):
                    pass
            return run

        best = {"last": float("inf"), **{p: float("inf") for p in keeps}}
        hooks()  # warm-up
        for _ in range(max(3, args.repeats)):  # alternate, so load changes hit every variant alike
            best["last"] = min(best["last"], timed(hooks, 1))
            for p, keep in keeps.items():
                best[p] = min(best[p], timed(positions(keep), 1))
        print(f"SmolLM2-135M float32, {args.n} sequences, {sum(lengths)} tokens, {args.threads} threads; "
              f"best of {max(3, args.repeats)} alternating runs")
        print(f"{'positions':<14}{'rows kept':>10}{'seconds':>9}{'tok/s':>9}{'vs last':>9}")
        print(f"{'last':<14}{len(seqs):>10}{best['last']:>9.2f}{sum(lengths) / best['last']:>9.0f}{'':>9}")
        for p, keep in keeps.items():
            n_rows = sum(len(k) for k in keep)
            print(f"{p:<14}{n_rows:>10}{best[p]:>9.2f}{sum(lengths) / best[p]:>9.0f}"
                  f"{100 * (best[p] / best['last'] - 1):>+8.1f}%")
        return
    rows = [("hooks (this package)", timed(hooks))]
    if not args.only_hooks:
        rows += [
            ("hidden_states/sorted", timed(lambda: hidden(sorted_batches))),
            ("hidden_states/naive", timed(lambda: hidden(naive_batches))),
        ]
    print(f"SmolLM2-135M float32, {args.n} sequences, {sum(lengths)} tokens, {args.threads} threads")
    print(f"float32 GEMM peak, square 2048^3 matmul (best of 10): {peak:.1f} GFLOP/s")
    print(f"float32 GEMM peak, the model's shapes (4096 x {m.config.hidden_size} @ {m.config.hidden_size} x "
          f"{{{m.config.hidden_size}, {m.config.intermediate_size}}}): {mpeak:.1f} GFLOP/s")
    print(f"{'method':<24}{'seq/s':>8}{'tok/s':>9}{'GFLOP/s':>10}{'% square':>10}{'% model-GEMM':>14}")
    for name, sec in rows:
        gf = flops / sec / 1e9
        print(f"{name:<24}{args.n / sec:>8.1f}{sum(lengths) / sec:>9.0f}{gf:>10.1f}{100 * gf / peak:>9.0f}%{100 * gf / mpeak:>13.0f}%")


if __name__ == "__main__":
    main()
