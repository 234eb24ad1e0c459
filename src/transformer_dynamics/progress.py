"""One-line progress with an ETA for long loops (extraction chunks, CAE epochs, perturbations).

(The onstart estimate of a whole run is :func:`transformer_dynamics.jobs.estimate_runtime`.)

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
