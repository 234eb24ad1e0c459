"""One-line progress with an ETA for long loops (extraction chunks, CAE epochs, perturbations).

The line goes to a *terminal* stream, separate from the detailed log: in a Snakemake job,
:func:`transformer_dynamics.rulelog.rule_logging` sends stdout/stderr to the job's log and
points the terminal stream at the job's original stderr, which Snakemake shows. Outside a
job (a notebook, a test) the line goes to ``sys.stderr``.

Lines are rate-limited (at most one per ``min_interval`` seconds, plus the first and the
last), so a terminal running several jobs stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import IO

_TERMINAL: IO[str] | None = None
_LABEL = ""


def set_terminal(stream: IO[str] | None, label: str = "") -> None:
    """Where progress lines go (None: ``sys.stderr`` at the time of writing) and their default label."""
    global _TERMINAL, _LABEL
    _TERMINAL, _LABEL = stream, label


def terminal() -> IO[str]:
    return _TERMINAL if _TERMINAL is not None else sys.stderr


def fmt_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class Progress:
    """Progress of ``total`` steps of a job named ``label`` (default: the label of :func:`set_terminal`).

    ``update(done, note)`` writes ``[label] what done/total (pct), elapsed, ETA ..., note``.
    The ETA extrapolates the mean time per step of this run (``upper_bound=True`` prints
    ``ETA <= ...``, for loops that may stop early such as early-stopped training).
    """

    def __init__(self, total: int, what: str = "step", label: str | None = None, min_interval: float = 5.0,
                 upper_bound: bool = False, stream: IO[str] | None = None):
        self.label = _LABEL if label is None else label
        self.total, self.what = max(int(total), 1), what
        self.min_interval, self.upper_bound, self.stream = min_interval, upper_bound, stream
        self.t0 = time.perf_counter()
        self._last = -float("inf")

    def line(self, done: int, note: str = "", finished: bool = False) -> str:
        el = time.perf_counter() - self.t0
        head = f"[{self.label}] " if self.label else ""
        parts = [f"{head}{self.what} {done}/{self.total} ({100 * done / self.total:.0f}%)",
                 f"{fmt_seconds(el)} elapsed"]
        if finished or done >= self.total:
            parts.append("done")
        elif done > 0:
            eta = el / done * (self.total - done)
            parts.append(f"ETA {'<= ' if self.upper_bound else ''}{fmt_seconds(eta)}")
        if note:
            parts.append(note)
        return ", ".join(parts)

    def say(self, text: str) -> None:
        """One line ``[label] text`` on the terminal (e.g. where a resumed job starts)."""
        out = self.stream if self.stream is not None else terminal()
        try:
            print((f"[{self.label}] " if self.label else "") + text, file=out, flush=True)
        except (OSError, ValueError):  # terminal closed: progress is best-effort
            pass

    def update(self, done: int, note: str = "", force: bool = False, finished: bool = False) -> None:
        now = time.perf_counter()
        if not (force or finished or done in (1, self.total) or now - self._last >= self.min_interval):
            return
        self._last = now
        out = self.stream if self.stream is not None else terminal()
        try:
            print(self.line(done, note, finished), file=out, flush=True)
        except (OSError, ValueError):  # terminal closed: progress is best-effort
            pass


def estimate_runtime(
    n_layers: int,
    d_model: int,
    n_samples: int,
    n_conditions: int = 2,
    n_shuffles: int = 1000,
    unit_block: int = 64,
    max_epochs: int = 100,
    perturb_runs: int = 1500,
    tokens_per_sample: float = 77.0,
    tok_per_s: float | None = None,
    cores: int = 2,
    position_buckets: int = 0,
    position_cap: int | None = None,
) -> dict[str, float]:
    """Rough wall-clock seconds of a from-scratch run of one model, per stage, on an idle CPU.

    Calibrated on SmolLM2-135M (30 layers, D = 576) on a 2-core machine (the per-rule times of
    the runs in docs/speed.md and docs/positions.md, 2026-11); the cost of each
    stage is scaled by the quantity it grows with (tokens x parameters for the model passes,
    samples x sublayers x units for the analyses). ``tok_per_s`` is the extraction
    throughput measured in an earlier run (the extraction logs print it); without it, a
    throughput that falls with the model's size is assumed. ``position_buckets`` > 0 adds the
    position-resolved stages (a second extraction, one analysis job per bucket on at most
    ``position_cap`` tokens, the pooled-token CAE; docs/positions.md). Returns seconds per
    stage and ``total``; a busy machine takes longer.
    """
    S = 2 * n_layers
    params_m = max(1.0, (12 * n_layers * d_model**2 + 2 * 49_152 * d_model) / 1e6)
    # tokens per second with 2 idle cores: SmolLM2 float32 ran at 650 tok/s (2-core AMD EPYC, 2026-11)
    rate = tok_per_s if tok_per_s else 850.0 * 135.0 / params_m
    scale_cores = max(1, cores) / 2
    units = S * d_model / (60 * 576)  # sublayers x units relative to SmolLM2
    blocks = -(-d_model // unit_block)
    per_job = 3.0  # interpreter start and imports, per job
    n = n_samples / 100
    est = {
        "extraction": n_conditions * n_samples * tokens_per_sample / rate,
        "unit statistics and MI": n_conditions * (blocks * (per_job + 0.4 * n * S / 60 * unit_block / 64)),
        "rotations": n_conditions * blocks * (per_job + 0.1 * n_shuffles / 200 * S / 60 * unit_block / 64),
        "PCA": n_conditions * (per_job + 0.5 * n * units * d_model / 576),
        # 1 thread per condition (rules/autoencoder.smk), 2.4 s/epoch at N = 1000
        "autoencoder": n_conditions * min(max_epochs, 60) * (0.4 + 2.0 * n * units / 10),
        "perturbations": n_conditions * perturb_runs * 3 / rate,
        "figures and tables": n_conditions * 6 * per_job + 3 * per_job,
    }
    if position_buckets:
        nc = (position_cap or n_samples) / 100
        est["position extraction"] = est["extraction"]
        est["position buckets"] = n_conditions * position_buckets * (
            per_job + blocks * (0.4 * nc * S / 60 * unit_block / 64 + 0.1 * n_shuffles / 200 * S / 60 * unit_block / 64)
            + 0.5 * nc * units * d_model / 576)
        est["position autoencoder"] = n_conditions * max_epochs * (1.0 + 2.0 * nc * units / 10)
    # extraction and perturbations use every core already; the many small single-threaded
    # jobs share the cores, and the conditions' autoencoders (1 thread each) run side by side
    parallel = {"unit statistics and MI", "rotations", "PCA", "figures and tables", "position buckets"}
    out = {k: (v / max(1, cores) if k in parallel else v / max(1.0, scale_cores ** 0.7)) for k, v in est.items()}
    out["autoencoder"] = est["autoencoder"] / max(1, min(cores, n_conditions))
    out["total"] = sum(out.values())
    return out
