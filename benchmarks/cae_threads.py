"""CAE epoch time with and without a competing CPU job, threads pinned or not.

    python benchmarks/cae_threads.py [--n 1000] [--epochs 3] [--threads 2]

Each configuration trains the compressing autoencoder (SmolLM2-135M shape: 60 sublayers x
576 units, the default CAE) on surrogate vectors in a fresh subprocess, for ``--epochs``
epochs, and reports the median seconds per epoch:

- ``unpinned``: what a job did before pinning: thread settings inherited from the shell
  (none here), so torch uses every core and OpenMP threads spin while they wait.
- ``pinned``: what every rule does now (transformer_dynamics.rulelog): OMP/MKL/OpenBLAS
  threads and torch threads equal to the job's ``threads``, set before torch loads,
  OMP_WAIT_POLICY=PASSIVE, then threadpoolctl/torch limits at run time.

The competing job is an unpinned torch loop (matrix products on every core), started 3 s
before the measured run. Wall and CPU seconds per epoch are printed: under contention,
OpenMP threads that spin while they wait burn CPU time that does no work. The machine's
load average is printed: on a shared machine the baseline is already contended.

Measured 2026-11-26 (2-core AMD EPYC host, otherwise idle, n=1000, 3 epochs; docs/speed.md,
"Threads"): alone, unpinned 1.65-1.97 s/epoch, pinned (PASSIVE) 3.52-4.01, pinned with
OpenMP's default wait policy 1.67-2.35; beside the competitor, unpinned 7.34-7.43, pinned
(PASSIVE) 5.72-8.18, pinned-active 8.65-9.40 (up to 97 CPU s/epoch of spinning).
Modes ``pinned-active`` and ``pinned-spin`` (GOMP_SPINCOUNT=30000) exist for that comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import os, sys, json
mode, threads, n, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if mode.startswith("pinned"):
    from transformer_dynamics.rulelog import pin_threads, limit_loaded_libraries
    pin_threads(threads)
    if mode in ("pinned-active", "pinned-spin"):
        os.environ.pop("OMP_WAIT_POLICY", None)
    if mode == "pinned-spin":
        os.environ["GOMP_SPINCOUNT"] = "30000"
import numpy as np, torch
from transformer_dynamics import autoencoder as cae
from transformer_dynamics import store
if mode.startswith("pinned"):
    limit_loaded_libraries(threads)
rng = np.random.default_rng(0)
S, D = 60, 576
base = rng.standard_normal((n, 1, D)).astype(np.float32)
rs = (base + 0.3 * np.cumsum(rng.standard_normal((n, S, D)).astype(np.float32), axis=1)) * 3
splits = cae.split_samples(n, [0.7, 0.15, 0.15], 0)
read = store.sample_reader(rs, 100)
cfg = cae.CAEConfig(max_epochs=epochs, patience=epochs + 1, seed=0)
import time
c0 = time.process_time()
_, _, curve = cae.train_cae(read, splits, D, cfg, "cpu", progress=False)
cpu = (time.process_time() - c0) / len(curve)
print(json.dumps({"seconds": curve["seconds"].tolist(), "cpu": cpu, "torch_threads": torch.get_num_threads()}))
"""

# another job that uses torch the way an unpinned job did: every core, spinning OpenMP threads
BUSY = "import torch\na = torch.randn(512, 512)\nwhile True:\n    a = torch.tanh(a @ a.T / 512)\n"


def run(mode: str, threads: int, n: int, epochs: int, compete: bool) -> tuple[float, float, int]:
    import json

    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "OMP_WAIT_POLICY"}
    rival = subprocess.Popen([sys.executable, "-c", BUSY], env=env) if compete else None
    if rival is not None:
        time.sleep(3)  # let it load torch and start
    try:
        out = subprocess.run([sys.executable, "-c", WORKER, mode, str(threads), str(n), str(epochs)],
                             capture_output=True, text=True, env=env, check=True)
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return statistics.median(res["seconds"]), res["cpu"], res["torch_threads"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="samples (70%% train: n * 0.7 * 60 vectors)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="the rule's threads")
    ap.add_argument("--modes", nargs="*", default=["unpinned", "pinned"],
                    help="unpinned | pinned (what the rules do) | pinned-active (pinned, OpenMP's default wait policy)")
    a = ap.parse_args()
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()[0]:.2f}, n={a.n}, {a.epochs} epochs each")
    print(f"{'threads':<16}{'competing job':<15}{'torch threads':>14}{'wall s/epoch':>14}{'CPU s/epoch':>13}")
    for mode in a.modes:
        for compete in (False, True):
            t0 = time.time()
            sec, cpu, tt = run(mode, a.threads, a.n, a.epochs, compete)
            label = mode if mode == "unpinned" else f"{mode} to {a.threads}"
            print(f"{label:<16}{'yes' if compete else 'no':<15}{tt:>14}{sec:>14.2f}{cpu:>13.2f}", flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
