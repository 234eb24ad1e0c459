"""Load time and peak memory of a random-init model against the bytes of its weights.

    python benchmarks/random_init.py [--architecture configs/architectures/llama-3.1-8b.json] [--dtype bfloat16]

Weights are created directly in the model's dtype (no float32 copy): the peak RSS of the
process should stay within 1.2x the weights' bytes (docs/scale.md: 1.03x for the 8B shape).
Needs memory for the weights (~15 GB for the 8B shape in bfloat16).
"""

from __future__ import annotations

import argparse
import resource
import time

from transformer_dynamics.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--architecture", default="configs/architectures/llama-3.1-8b.json")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    m = load_model("random-init", args.dtype, "cpu", seed=args.seed, architecture=args.architecture)
    secs = time.perf_counter() - t0
    weights = sum(p.numel() * p.element_size() for p in m.model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("| architecture | dtype | parameters | weights GB | load s | peak RSS GB | peak / weights |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.architecture} | {args.dtype} | {m.info['n_parameters'] / 1e9:.3f} B | {weights / 1e9:.2f} | "
          f"{secs:.0f} | {peak / 1e9:.2f} | {peak / weights:.3f} |")


if __name__ == "__main__":
    main()
