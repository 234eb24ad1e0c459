"""Helpers for rule bodies: send a job's output to its log file, set thread counts.

Takes Snakemake's ``snakemake`` object as an argument; never imports snakemake.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any, Iterator


@contextlib.contextmanager
def rule_logging(smk: Any) -> Iterator[None]:
    """Redirect stdout/stderr to ``smk.log[0]`` (if any) and set torch/BLAS threads.

    An exception is written to the log with its traceback and re-raised, so Snakemake
    reports the job as failed and the log says why.
    """
    threads = str(getattr(smk, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    try:
        import torch

        torch.set_num_threads(int(threads))
    except ImportError:  # pragma: no cover
        pass
    log = list(getattr(smk, "log", []) or [])
    if not log:
        yield
        return
    os.makedirs(os.path.dirname(log[0]) or ".", exist_ok=True)
    with open(log[0], "w", buffering=1) as fh:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        import platform

        job = os.environ.get("SLURM_JOB_ID")
        print(f"host {platform.node()}" + (f", SLURM job {job}" if job else ""), flush=True)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=fh)
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err
