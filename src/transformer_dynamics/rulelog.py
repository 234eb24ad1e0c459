"""Helpers for rule bodies: pin thread counts, send a job's output to its log file.

Takes Snakemake's ``snakemake`` object as an argument; never imports snakemake.

Every rule script starts with::

    from transformer_dynamics.rulelog import pin_threads
    pin_threads(snakemake)          # before numpy/torch are imported

so the math libraries read thread settings equal to the rule's ``threads`` when they load;
:func:`rule_logging` then applies the same limit at run time to whatever is loaded
(threadpoolctl for BLAS/OpenMP, ``torch.set_num_threads``), overriding any outer value.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any, Iterator

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def slurm_allocated_cpus() -> int | None:
    """CPUs of the SLURM job this process runs in (``SLURM_CPUS_PER_TASK``), else None.

    Used when the workflow is re-evaluated inside a SLURM job, so that a rule's threads there
    equal what was submitted (a job step may not ask for more than its allocation).
    """
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() else None


def job_threads(smk: Any) -> int:
    return max(1, int(getattr(smk, "threads", 1) or 1))


def pin_threads(smk_or_n: Any) -> int:
    """Set the thread environment of this process to the job's threads (call before heavy imports).

    Overrides values inherited from the shell: a job uses exactly the cores Snakemake gave it.
    ``OMP_WAIT_POLICY=PASSIVE`` makes idle OpenMP threads sleep instead of spinning, so a
    job that shares the CPU with another does not burn the other's time (or its own).
    """
    n = smk_or_n if isinstance(smk_or_n, int) else job_threads(smk_or_n)
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return n


def limit_loaded_libraries(n: int) -> None:
    """Limit the thread pools of the libraries already loaded (BLAS, OpenMP, torch) to ``n``."""
    pin_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - a dependency, but the limit is best-effort
        pass
    torch = sys.modules.get("torch")  # not loaded yet: it reads OMP_NUM_THREADS when it loads
    if torch is None:
        return
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # only possible before the first parallel op
        torch.set_num_interop_threads(n)


def job_label(smk: Any) -> str:
    """``rule model/store/condition/shard`` (etc.) from the job's rule name and wildcard values."""
    rule = getattr(smk, "rule", "") or "job"
    wc = getattr(smk, "wildcards", None)
    try:  # an empty {view} (the paper's) adds nothing; "positions/2-3/" reads positions/2-3
        values = [str(v).strip("/") for v in (wc.values() if hasattr(wc, "values") else wc or []) if str(v)]
    except TypeError:
        values = []
    return rule + (f" {'/'.join(values)}" if values else "")


@contextlib.contextmanager
def rule_logging(smk: Any) -> Iterator[None]:
    """Pin threads, redirect stdout/stderr to ``smk.log[0]`` (if any), keep progress on the terminal.

    Progress lines (:mod:`transformer_dynamics.progress`) still go to the job's original
    stderr, which Snakemake shows in the terminal; everything else goes to the log. An
    exception is written to the log with its traceback and re-raised, so Snakemake reports
    the job as failed and the log says why.
    """
    from . import progress

    limit_loaded_libraries(job_threads(smk))
    progress.set_terminal(sys.stderr, job_label(smk))
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
        print(f"host {platform.node()}" + (f", SLURM job {job}" if job else "")
              + f", {job_threads(smk)} threads", flush=True)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=fh)
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err


def skip_unanalysed(smk: Any) -> bool:
    """For a job of a view that cannot be analysed (its ``status`` input, written by the
    ``view_status`` rule, says why): write every output empty and return True.

    Jobs of the paper's view have no ``status`` input and always run. The findings by position
    read the status and report such a bucket as "not analysed", with the reason.
    """
    import json

    path = smk.input.get("status") if hasattr(smk.input, "get") else None
    if not path:
        return False
    with open(path) as fh:
        status = json.load(fh)
    if status.get("analysed", True):
        return False
    import numpy as np
    import pandas as pd

    for out in smk.output:
        out = str(out)
        if out.endswith(".parquet"):
            pd.DataFrame().to_parquet(out, index=False)
        elif out.endswith(".npz"):
            np.savez(out)
        elif out.endswith(".json"):
            with open(out, "w") as fh:
                json.dump(status, fh, indent=2)
        else:
            open(out, "w").close()
    print(f"not analysed: {status.get('reason')}; wrote empty outputs")
    return True
