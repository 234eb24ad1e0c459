"""Jobs: what the workflow runs for a config and what each job costs.

The workflow's rules (``rules/*.smk``) ask this module, through ``rules/common.smk``, for
everything that is computed from the config rather than declared: the config checks the
schema cannot express, the model shapes (read without loading weights), the sample shards,
unit blocks and position-bucket views a run fans out over, the files that are inputs, the
targets, every memory request (``*_mem_mb``, MB) and the onstart runtime estimate. Every
memory and runtime number of the workflow lives here, so they can be tested without
Snakemake (``tests/unit/test_jobs.py``) and read in one place.

Never imports snakemake: a :class:`Plan` is built from the config dict (defaults filled in
by the schema) and answers with plain values.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

BUCKET_LABELS = ("all", "0", "1", "2-3", "4-7", "8-15", "16-31", "32+", "last")
"""Every position bucket label (:data:`transformer_dynamics.positions.BUCKETS`, without importing numpy)."""

CORPUS_SUFFIXES = (".txt", ".jsonl", ".parquet")
"""Local corpus files the loader reads (:func:`transformer_dynamics.corpus.load_corpus`)."""

PER_JOB_S = 3.0
"""Seconds of interpreter start and imports per job (the runtime estimate)."""


def config_problems(cfg: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Short messages for what the schema rejects: the key, the offending value, a suggestion."""
    import jsonschema

    def where(path: list[Any]) -> str:
        return ".".join(str(p) for p in path) or "(top level)"

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    problems = []
    for err in sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(map(str, e.path))):
        path = list(err.path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = list(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(known)):
                hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                problems.append(
                    f"{where(path + [key])}: unknown key (value {short(err.instance[key])}). "
                    + (f"Did you mean {where(path + [hint[0]])}?" if hint else f"Known keys here: {', '.join(known)}.")
                )
        elif err.validator == "enum":
            hint = difflib.get_close_matches(str(err.instance), [str(v) for v in err.validator_value], n=1, cutoff=0.5)
            problems.append(
                f"{where(path)}: {short(err.instance)} is not one of {', '.join(map(str, err.validator_value))}."
                + (f" Did you mean {hint[0]}?" if hint else "")
            )
        else:
            problems.append(f"{where(path)}: {err.message}")
    results = cfg.get("results_dir", "results")
    if isinstance(results, str) and not cfg.get("allow_results_outside_workdir", False):
        inside = Path(results).expanduser().resolve(strict=False)
        if not inside.is_relative_to(Path.cwd().resolve()):
            problems.append(
                f"results_dir: {results!r} is outside the working directory {Path.cwd()} (the workflow deletes and "
                "replaces folders under it). Use a folder inside it, or set allow_results_outside_workdir: true "
                "if that folder belongs to this run."
            )
    return problems


def check_config(cfg: dict[str, Any]) -> None:
    """Raise a ValueError (the key, its value and the fix first) for a config the schema
    accepts but that cannot work."""
    ex = cfg["extraction"]
    if ex["shard_size"] % ex["sample_chunk"]:
        raise ValueError(
            f"extraction.shard_size ({ex['shard_size']}) must be a multiple of extraction.sample_chunk "
            f"({ex['sample_chunk']}): shards write whole Zarr chunks"
        )
    if cfg["corpus"]["min_chars"] >= cfg["corpus"]["max_chars"] - 1:
        raise ValueError("corpus.min_chars must be smaller than corpus.max_chars - 1 (bounds are strict)")
    src = cfg["corpus"]["source"]
    if src != "wiki-offline" and not src.startswith("wikitext-"):
        # a local file: it must exist now, or a finished run's filtered corpus would be reused
        # for a source that is gone (its missing input would not trigger a rerun)
        p = Path(src)
        if not p.is_file():
            raise ValueError(
                f"corpus.source: {src!r} is not an existing file (relative paths are from the working directory "
                f"{Path.cwd()}) nor a known corpus: use wiki-offline, a wikitext-* name (e.g. wikitext-2-raw-v1) "
                "or the path of a .txt, .jsonl or .parquet file"
            )
        if p.suffix.lower() not in CORPUS_SUFFIXES:
            raise ValueError(f"corpus.source: {src!r} is a {p.suffix or 'suffix-less'} file; use a .txt, .jsonl or "
                             ".parquet file (one text per line / a 'text' field / a 'text' column)")
    split = cfg["autoencoder"]["split"]
    if abs(sum(split) - 1) > 1e-6 or min(split) <= 0:
        raise ValueError(
            f"config.yaml: autoencoder.split {split} must be three positive fractions summing to 1 "
            f"(they sum to {sum(split):g}), e.g. [0.7, 0.15, 0.15]"
        )
    if not src.startswith("wikitext-"):
        # the embedded corpus and local files load in well under a second: too few texts is
        # a config error now, not a failed job after the estimate (hub datasets: filter_corpus)
        from .corpus import draw_samples, filter_texts, load_corpus

        texts = load_corpus(src).texts
        draw_samples(filter_texts(texts, cfg["corpus"]["min_chars"], cfg["corpus"]["max_chars"]),
                     cfg["n_samples"], cfg["seed"])


class ConfigError(SystemExit):
    """A config that cannot work, raised at parse time: Snakemake prints nothing of its own for
    a ``SystemExit``, so the message is line 1 of the output and no traceback follows."""

    def __init__(self, message: str) -> None:
        import sys

        print(f"{message}\nNothing was run. Every key, its type and default: workflow/schemas/config.schema.yaml",
              file=sys.stderr)
        super().__init__(1)


def plan_config(cfg: dict[str, Any], schema_file: Path, validate: Any) -> "Plan":
    """The :class:`Plan` of ``cfg`` after every check, in order: unknown keys and wrong types
    (:func:`config_problems`, all at once), the schema's defaults filled in by Snakemake's
    ``validate``, then :func:`check_config` and the model sources. Any failure raises
    :class:`ConfigError` (exit 1, the message naming key, value and fix on line 1)."""
    from .models.errors import ModelLoadError
    import yaml

    problems = config_problems(cfg, yaml.safe_load(Path(schema_file).read_text()))
    if problems:
        raise ConfigError("invalid configuration (config.yaml plus any --configfile/--config):\n  "
                          + "\n  ".join(problems))
    validate(cfg, str(schema_file), set_default=True)
    try:
        check_config(cfg)
        return Plan(cfg)
    except (ValueError, ModelLoadError) as err:
        raise ConfigError(str(err)) from None


def job_memory_mb(spec: dict[str, Any], base_mb: int = 1500, factor: float = 1.15) -> int:
    """Memory request of a job that holds the model: ``factor`` x the weights in their dtype
    plus ``base_mb`` for the interpreter, torch, transformers and activations (measured in
    docs/scale.md: peak RSS of extraction and perturbation jobs). ``spec`` has the schema's
    defaults filled in (its ``dtype``)."""
    from .models.shapes import DTYPE_BYTES, spec_parameters

    bytes_per = DTYPE_BYTES[spec["dtype"]]
    return int(base_mb + factor * spec_parameters(spec) * bytes_per / 1e6)


class Plan:
    """The jobs of a run: shapes, shards, unit blocks, views, inputs, targets and costs.

    Parameters
    ----------
    cfg : the config with the schema's defaults filled in.
    dims : ``{model: (L, D)}``; default: read from each model's source
        (:func:`transformer_dynamics.models.shapes.model_dims`, no weights loaded).
    """

    def __init__(self, cfg: dict[str, Any], dims: dict[str, tuple[int, int]] | None = None) -> None:
        self.cfg = cfg
        self.models = list(cfg["models"])
        self.conditions = list(cfg["conditions"])
        self.results = cfg["results_dir"].rstrip("/")
        self.positions = cfg["extraction"]["positions"] != "last"
        self.stores = ["activations", "positions"] if self.positions else ["activations"]
        if dims is None:
            from .models.shapes import model_dims

            dims = {
                m: model_dims(spec["source"], {k: spec[k] for k in ("n_layers", "d_model") if k in spec},
                              f"models.{m}", spec.get("architecture"))
                for m, spec in cfg["models"].items()
            }
        self.dims = dims

    # -- shapes and fan-out --------------------------------------------------------------

    def n_layers(self, model: str) -> int:
        return self.dims[model][0]

    def d_model(self, model: str) -> int:
        return self.dims[model][1]

    def unit_blocks(self, model: str) -> list[str]:
        """Block ids 000, 001, ... covering the model's D units in blocks of analysis.unit_block."""
        return [f"{b:03d}" for b in range(math.ceil(self.d_model(model) / self.cfg["analysis"]["unit_block"]))]

    def unit_range(self, model: str, block: str) -> tuple[int, int]:
        size = self.cfg["analysis"]["unit_block"]
        u0 = int(block) * size
        return u0, min(self.d_model(model), u0 + size)

    def shards(self) -> list[str]:
        """Shard ids 000, 001, ... of n_samples in blocks of extraction.shard_size."""
        return [f"{s:03d}" for s in range(math.ceil(self.cfg["n_samples"] / self.cfg["extraction"]["shard_size"]))]

    def shard_rows(self, shard: str) -> tuple[int, int]:
        size = self.cfg["extraction"]["shard_size"]
        s0 = int(shard) * size
        return s0, min(self.cfg["n_samples"], s0 + size)

    def store_positions(self, store: str) -> str:
        """The positions a store keeps: the last token (activations) or extraction.positions."""
        return "last" if store == "activations" else self.cfg["extraction"]["positions"]

    def row_chunk(self, store: str) -> int:
        """Rows per chunk of rs: extraction.sample_chunk (last token) or extraction.token_chunk."""
        return self.cfg["extraction"]["sample_chunk" if store == "activations" else "token_chunk"]

    def bucket_cap(self) -> int:
        """Tokens analysed per position bucket (positions.max_tokens_per_bucket, default n_samples)."""
        cap = self.cfg["positions"]["max_tokens_per_bucket"]
        return self.cfg["n_samples"] if cap is None else cap

    def view_rows(self, view: str) -> int:
        """Most observations a job of ``view`` reads: n_samples, or a bucket's cap."""
        return self.bucket_cap() if view else self.cfg["n_samples"]

    def store_made_for(self, model: str, condition: str, store: str = "activations") -> dict[str, Any]:
        """The settings a job expects its store to be made for (checked on read against
        :func:`transformer_dynamics.store.made_for`: ``views.open_view(made_for=...)``)."""
        c = self.cfg
        return {"n_samples": c["n_samples"], "seed": c["seed"], "corpus.min_chars": c["corpus"]["min_chars"],
                "corpus.max_chars": c["corpus"]["max_chars"], "condition": condition,
                "dtype": c["models"][model]["dtype"], "positions": self.store_positions(store)}

    def corpus_made_for(self) -> dict[str, Any]:
        """The settings a job expects the drawn samples (corpus.json) to be made for."""
        c = self.cfg
        return {"n_samples": c["n_samples"], "seed": c["seed"], "min_chars": c["corpus"]["min_chars"],
                "max_chars": c["corpus"]["max_chars"]}

    def view_spec(self, view: str) -> dict[str, Any] | None:
        """:func:`transformer_dynamics.views.open_view`'s arguments for a bucket view; None for the
        paper's view, so position options never re-run the paper's jobs."""
        if not view:
            return None
        return {"bucket": view.split("/")[1], "cap": self.bucket_cap(), "seed": self.cfg["seed"]}

    def n_components(self, model: str, view: str) -> int:
        """PCs fit_pca saves: pca.n_components, or positions.n_components for a bucket view
        ("all" = D, null = pca.n_components)."""
        n = self.cfg["positions"]["n_components"] if view else None
        return self.cfg["pca"]["n_components"] if n is None else (self.d_model(model) if n == "all" else n)

    def perturb_layers(self, model: str) -> list[int]:
        layers = self.cfg["perturbations"]["layers"]
        L = self.n_layers(model)
        if layers == "auto":
            from .depth import default_layers

            return default_layers(L)
        bad = [l for l in layers if l >= L]
        if bad:
            raise ValueError(f"perturbations.layers {bad} do not exist in model {model} ({L} layers)")
        return sorted(layers)

    # -- inputs and targets --------------------------------------------------------------

    def tokenizer_spec(self, model: str) -> dict[str, Any]:
        """The config keys that decide a model's tokenizer (params of the tokenize rule)."""
        spec = self.cfg["models"][model]
        return {k: spec[k] for k in ("source", "architecture", "tokenizer") if k in spec}

    def model_files(self, model: str) -> list[str]:
        """The files of a local model source (a .gguf file, or a save_pretrained directory) and
        the architecture config of a random-init model, as inputs: editing them re-runs what
        reads the model. Empty for embedded, random-init without architecture, and hub ids."""
        spec = self.cfg["models"][model]
        src = spec["source"]
        if src == "random-init":
            return [spec["architecture"]] if "architecture" in spec else []
        if src == "embedded":
            return []
        if src.endswith(".gguf"):
            return [src]
        p = Path(src)
        if p.is_dir():
            return sorted(
                str(f) for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        return []

    def corpus_files(self) -> list[str]:
        """The local corpus file as an input (editing it re-runs the filter), else nothing."""
        src = self.cfg["corpus"]["source"]
        return [] if src == "wiki-offline" or src.startswith("wikitext-") else [src]

    def store_path(self, model: str, condition: str, store: str = "activations") -> str:
        return f"{self.results}/{model}/{store}/{condition}.zarr"

    def all_targets(self) -> list[str]:
        """The default target: every figure, the findings and the stores."""
        r = self.results
        targets = [f"{r}/findings.md", f"{r}/comparison/depth_profiles.png"] if "original" in self.conditions else []
        for m in self.models:
            for c in self.conditions:
                targets += [self.store_path(m, c)] + [
                    f"{r}/{m}/{p}" for p in (f"figures/fig1_{c}.png", f"figures/fig2_{c}.png",
                                             f"rotations/{c}.summary.json", f"figures/fig3_{c}.png",
                                             f"figures/fig4_{c}.png", f"figures/perturbation_kinds_{c}.png")
                ]
            if self.positions:
                targets.append(f"{r}/{m}/figures/findings_by_position.png")
        return targets

    # -- memory requests (MB; each retry asks for attempt x this) -------------------------

    def model_mem_mb(self, model: str) -> int:
        """Jobs that hold the model: the weights in their dtype plus working space."""
        spec = self.cfg["models"][model]
        return spec["mem_mb"] if "mem_mb" in spec else job_memory_mb(spec)

    def extract_mem_mb(self, model: str, store: str) -> int:
        """An extraction job: the model plus a few row chunks of float32 (rows, 2L, D) (1 GB per
        chunk of 1024 token rows at 64 x 4096)."""
        L, D = self.dims[model]
        return self.model_mem_mb(model) + int(4 * self.row_chunk(store) * 2 * L * D * 4 / 1e6)

    def gather_mem_mb(self, model: str, store: str) -> int:
        """The gather: two row chunks and the per-row/per-text arrays, with headroom."""
        L, D = self.dims[model]
        return 2000 + int(3 * self.row_chunk(store) * 2 * L * D * 4 / 1e6)

    def block_mem_mb(self, model: str, view: str = "") -> int:
        """A unit-block job: a float64 (rows, 2L, block) slab and a few working copies."""
        L, _ = self.dims[model]
        slab = self.view_rows(view) * 2 * L * self.cfg["analysis"]["unit_block"] * 8
        return int(1500 + 8 * slab / 1e6)

    def rotation_block_mem_mb(self, model: str, view: str = "") -> int:
        """A unit-block job plus the (units x shuffles x sublayers) permutations and null paths."""
        return self.block_mem_mb(model, view) + 1000

    def autoencoder_mem_mb(self, model: str) -> int:
        """A few sample chunks and the network, with headroom (the CAE streams the store)."""
        return self.block_mem_mb(model) + 2000

    def pca_mem_mb(self, model: str) -> int:
        """pca.memory_mb for the per-sublayer spectra plus three D x D float64 matrices."""
        return 1500 + self.cfg["pca"]["memory_mb"] + int(3 * 8 * self.d_model(model) ** 2 / 1e6)

    # -- the onstart estimate -------------------------------------------------------------

    def measured_tok_per_s(self, model: str) -> float | None:
        """Extraction throughput printed by an earlier run's logs (chunk lines), or None."""
        rates = []
        for log in sorted(Path(f"{self.results}/logs/{model}/activations/extract").glob("*/*.log")):
            found = re.findall(r"(\d+) tok/s", log.read_text(errors="replace"))
            if found:
                rates.append(float(found[-1]))
        return max(rates) if rates else None

    def store_current(self, model: str, condition: str) -> bool:
        """Whether the activation store exists, is complete and holds this config's samples and
        seed (a store of an earlier config, e.g. configs/quick.yaml, will be re-extracted)."""
        path = Path(self.store_path(model, condition))
        if not path.exists():
            return False
        try:
            import zarr

            g = zarr.open_group(str(path), mode="r")
            return (bool(g.attrs.get("complete")) and g["rs"].shape[0] == self.cfg["n_samples"]
                    and g.attrs.get("seed") == self.cfg["seed"])
        except Exception:  # unreadable: it will be rebuilt
            return False

    def runtime_estimate_message(self, cores: int) -> str:
        """What `onstart` prints: a rough run time per model and where progress and logs are."""
        from .progress import fmt_seconds

        cfg, pert = self.cfg, self.cfg["perturbations"]
        per_model: list[tuple[dict[str, float], int, str]] = []
        total = 0.0
        for m in self.models:
            todo = [c for c in self.conditions if not self.store_current(m, c)]
            runs = sum(pert["grid"] ** 2 if k == "teleport" else pert["n_random"] for k in pert["kinds"])
            rate = self.measured_tok_per_s(m)
            est = estimate_runtime(
                self.n_layers(m), self.d_model(m), cfg["n_samples"], n_conditions=len(self.conditions),
                n_shuffles=cfg["rotations"]["n_shuffles"], unit_block=cfg["analysis"]["unit_block"],
                max_epochs=cfg["autoencoder"]["max_epochs"], perturb_runs=runs * len(self.perturb_layers(m)),
                tok_per_s=rate, cores=cores,
                position_buckets=len(cfg["positions"]["buckets"]) if self.positions else 0,
                position_cap=self.bucket_cap(),
            )
            est["total"] -= est["extraction"] * (1 - len(todo) / len(self.conditions))
            total += est["total"]
            how = f"{rate:.0f} tok/s measured in an earlier run" if rate else "throughput assumed from the model size"
            per_model.append((est, len(todo), how))
        slow, load, ncpu = busy_factor(cores)
        lines = [f"  {m}: ~{fmt_seconds(est['total'] * slow)} (extraction of {todo} condition(s) "
                 f"~{fmt_seconds(est['extraction'] * todo / len(self.conditions) * slow)}, {how})"
                 for m, (est, todo, how) in zip(self.models, per_model)]
        where = (f"{cores} idle cores" if slow == 1.0 else
                 f"{cores} cores on a busy machine ({load:.1f} of {ncpu} CPUs busy with other work: times x{slow:.1f})")
        return "\n".join(
            [f"Estimated time from scratch with {where} (finished steps are skipped): ~{fmt_seconds(total * slow)}"]
            + lines
            + ["Long jobs print '[rule wildcards] step k/n (%), elapsed, ETA' lines here; every job's full log "
               f"is in {self.results}/logs/ (e.g. tail -f {self.results}/logs/<model>/activations/extract/<condition>/000.log)."]
        )


def busy_cpus(seconds: float = 0.5) -> float:
    """How many CPUs other work keeps busy now: the non-idle share of ``/proc/stat``'s CPU time
    over ``seconds``, times the CPUs (the caller sleeps meanwhile, so it is not counted).
    Where ``/proc/stat`` is missing, the 1-minute load average (which trails: it still
    counts work that ended a minute ago)."""
    import os
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    return (1 - (i1 - i0) / max(t1 - t0, 1)) * cpus


def busy_factor(cores: int) -> tuple[float, float, int]:
    """How much longer than on an idle machine the run takes: ``(factor, busy, cpus)``.

    The run's ``cores`` busy threads share the CPUs this process may use with the work
    already running (``busy`` CPUs, :func:`busy_cpus`): with ``busy + cores`` runnable
    threads on ``cpus`` CPUs each gets ``cpus / (busy + cores)`` of one, so the factor is
    ``(busy + cores) / cpus`` when above 1.1 (else 1.0: an idle machine, or noise).
    """
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = busy_cpus()
    factor = (busy + min(cores, cpus)) / cpus
    return (factor if factor > 1.1 else 1.0), busy, cpus


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
    position-resolved stages (a second extraction, per bucket the unit-block, vector and PCA
    jobs on at most ``position_cap`` tokens, the pooled-token CAE; docs/positions.md).
    Returns seconds per stage and ``total``; a busy machine takes longer.
    """
    S = 2 * n_layers
    params_m = max(1.0, (12 * n_layers * d_model**2 + 2 * 49_152 * d_model) / 1e6)
    # tokens per second with 2 idle cores: SmolLM2 float32 ran at 650 tok/s (2-core AMD EPYC, 2026-11)
    rate = tok_per_s if tok_per_s else 850.0 * 135.0 / params_m
    scale_cores = max(1, cores) / 2
    units = S * d_model / (60 * 576)  # sublayers x units relative to SmolLM2
    blocks = -(-d_model // unit_block)
    n = n_samples / 100
    est = {
        "extraction": n_conditions * n_samples * tokens_per_sample / rate,
        "unit statistics and MI": n_conditions * (blocks * (PER_JOB_S + 0.4 * n * S / 60 * unit_block / 64)),
        "rotations": n_conditions * blocks * (PER_JOB_S + 0.1 * n_shuffles / 200 * S / 60 * unit_block / 64),
        "PCA": n_conditions * (PER_JOB_S + 0.5 * n * units * d_model / 576),
        # 1 thread per condition (rules/autoencoder.smk), 2.4 s/epoch at N = 1000
        "autoencoder": n_conditions * min(max_epochs, 60) * (0.4 + 2.0 * n * units / 10),
        "perturbations": n_conditions * perturb_runs * 3 / rate,
        "figures and tables": n_conditions * 6 * PER_JOB_S + 3 * PER_JOB_S,
    }
    if position_buckets:
        nc = (position_cap or n_samples) / 100
        est["position extraction"] = est["extraction"]
        # per bucket: a status job, 2 x blocks unit-block jobs, 2 gathers, vector statistics, PCA
        est["position buckets"] = n_conditions * position_buckets * (
            (2 * blocks + 5) * PER_JOB_S
            + blocks * (0.4 * nc * S / 60 * unit_block / 64 + 0.1 * n_shuffles / 200 * S / 60 * unit_block / 64)
            + 0.5 * nc * units * d_model / 576)
        # one CAE per bucket view and condition, 1 thread each, side by side
        est["position autoencoders"] = n_conditions * position_buckets * min(max_epochs, 60) * (0.4 + 2.0 * nc * units / 10)
    # extraction and perturbations use every core already; the many small single-threaded
    # jobs share the cores, and the conditions' autoencoders (1 thread each) run side by side
    parallel = {"unit statistics and MI", "rotations", "PCA", "figures and tables", "position buckets",
                "position autoencoders"}
    out = {k: (v / max(1, cores) if k in parallel else v / max(1.0, scale_cores ** 0.7)) for k, v in est.items()}
    out["autoencoder"] = est["autoencoder"] / max(1, min(cores, n_conditions))
    out["total"] = sum(out.values())
    return out


def bucket_views(buckets: list[str]) -> list[str]:
    """The ``{view}`` wildcard values of position buckets (``positions/<bucket>/``)."""
    return [f"positions/{b}/" for b in buckets]
