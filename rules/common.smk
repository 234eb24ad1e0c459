# Config validation, model/condition/unit-block lists and target functions.
# Other rule files use these names; they do not re-derive them.

import math
import re
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

SCHEMA = "../workflow/schemas/config.schema.yaml"


def config_problems(cfg, schema):
    """Short messages for what the schema rejects: the key, the offending value, a suggestion."""
    import difflib

    import jsonschema

    def where(path):
        return ".".join(str(p) for p in path) or "(top level)"

    def short(value):
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
    return problems


def _validate_config():
    import yaml

    schema_path = Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    problems = config_problems(config, yaml.safe_load(schema_path.read_text()))
    if problems:
        raise ValueError(
            "invalid configuration (config.yaml plus any --configfile/--config):\n  "
            + "\n  ".join(problems)
            + "\nEvery key, its type and default: workflow/schemas/config.schema.yaml"
        )
    validate(config, SCHEMA, set_default=True)


_validate_config()

from transformer_dynamics.models import job_memory_mb, model_dims  # noqa: E402
from transformer_dynamics.provenance import script_code_sha256  # noqa: E402

MODELS = list(config["models"])


wildcard_constraints:
    model="|".join(re.escape(m) for m in config["models"]),
    condition="original|shuffled",
    block=r"\d+",
    shard=r"\d+",
    bucket="|".join(re.escape(b) for b in ("all", "0", "1", "2-3", "4-7", "8-15", "16-31", "32+", "last")),
    store="activations|positions",
    # the observations an analysis runs on, as a directory prefix: "" = the paper's last tokens
    # (results/<model>/stats/...), "positions/<bucket>/" = one position bucket (views.py)
    view="(|positions/("
    + "|".join(re.escape(b) for b in ("all", "0", "1", "2-3", "4-7", "8-15", "16-31", "32+", "last"))
    + ")/)",


CONDITIONS = list(config["conditions"])
RESULTS = config["results_dir"].rstrip("/")
ENV = "../envs/transformer-dynamics.yaml"

_DIMS = {
    m: model_dims(
        spec["source"],
        {k: spec[k] for k in ("n_layers", "d_model") if k in spec},
        f"models.{m}",
        spec.get("architecture"),
    )
    for m, spec in config["models"].items()
}


def n_layers(model):
    return _DIMS[model][0]


def d_model(model):
    return _DIMS[model][1]


def unit_blocks(model):
    """Block ids 000, 001, ... covering the model's D units in blocks of analysis.unit_block."""
    return [f"{b:03d}" for b in range(math.ceil(d_model(model) / config["analysis"]["unit_block"]))]


def unit_range(model, block):
    size = config["analysis"]["unit_block"]
    u0 = int(block) * size
    return u0, min(d_model(model), u0 + size)


def _check_extraction_config():
    ex = config["extraction"]
    if ex["shard_size"] % ex["sample_chunk"]:
        raise ValueError(
            f"extraction.shard_size ({ex['shard_size']}) must be a multiple of extraction.sample_chunk "
            f"({ex['sample_chunk']}): shards write whole Zarr chunks"
        )
    if config["corpus"]["min_chars"] >= config["corpus"]["max_chars"] - 1:
        raise ValueError("corpus.min_chars must be smaller than corpus.max_chars - 1 (bounds are strict)")
    split = config["autoencoder"]["split"]
    if abs(sum(split) - 1) > 1e-6 or min(split) <= 0:
        raise ValueError(
            f"config.yaml: autoencoder.split {split} must be three positive fractions summing to 1 "
            f"(they sum to {sum(split):g}), e.g. [0.7, 0.15, 0.15]"
        )


_check_extraction_config()


def shards():
    """Shard ids 000, 001, ... of n_samples in blocks of extraction.shard_size."""
    return [f"{s:03d}" for s in range(math.ceil(config["n_samples"] / config["extraction"]["shard_size"]))]


def shard_rows(shard):
    size = config["extraction"]["shard_size"]
    s0 = int(shard) * size
    return s0, min(config["n_samples"], s0 + size)


def tokenizer_spec(model):
    """The config keys that decide a model's tokenizer (params of the tokenize rule)."""
    spec = config["models"][model]
    return {k: spec[k] for k in ("source", "architecture", "tokenizer") if k in spec}


def code(script):
    """Hash of the package modules a rule's script uses (transitively): as a param, a change
    of that code re-runs the rule (Snakemake's params trigger), and only that rule."""
    return script_code_sha256(Path(workflow.basedir) / "scripts" / script)


def model_files(model):
    """The files of a local model source (a .gguf file, or a save_pretrained directory) and
    the architecture config of a random-init model, as inputs: editing them re-runs what
    reads the model. Empty for embedded, random-init without architecture, and hub ids."""
    spec = config["models"][model]
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
            str(f)
            for f in p.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
    return []


def corpus_files():
    """The local corpus file as an input (editing it re-runs the filter), else nothing."""
    src = config["corpus"]["source"]
    return [src] if Path(src).suffix.lower() in (".txt", ".jsonl", ".parquet") else []


def model_device(model):
    dev = config["models"][model]["device"]
    if dev == "auto":
        from transformer_dynamics.models import resolve_device

        return resolve_device("auto")
    return dev


def model_mem_mb(model):
    """Memory for jobs that hold the model: weights in their dtype plus working space."""
    spec = config["models"][model]
    return spec["mem_mb"] if "mem_mb" in spec else job_memory_mb(spec)


def model_threads():
    """Threads of the jobs that run the model (extraction, perturbations).

    Locally: every core Snakemake was given (``--cores``), so a model job has the machine to
    itself and two copies of a large model are never in memory at once. On a cluster without
    ``--cores``: 1, so no job asks a node for more CPUs than it has; raise it per rule with
    ``--set-threads extract_shard=16 perturb=16`` (or ``set-threads:`` in the profile).
    Inside a SLURM job the job's own allocation (``SLURM_CPUS_PER_TASK``) is the answer, so
    the job step asks for exactly what was submitted.
    """
    from transformer_dynamics.rulelog import slurm_allocated_cpus

    return slurm_allocated_cpus() or workflow.resource_settings.cores or 1


def store_path(model, condition):
    return f"{RESULTS}/{model}/activations/{condition}.zarr"


def perturb_layers(model):
    layers = config["perturbations"]["layers"]
    if layers == "auto":
        from transformer_dynamics.depth import default_layers

        return default_layers(n_layers(model))
    bad = [l for l in layers if l >= n_layers(model)]
    if bad:
        raise ValueError(f"perturbations.layers {bad} do not exist in model {model} ({n_layers(model)} layers)")
    return sorted(layers)


# Named input, param and resource functions of the rules (wildcards -> value), so rule
# headers say what they mean instead of repeating lambdas.


def activation_store(wildcards):
    """The finished activation store of the job's model and condition."""
    return store_path(wildcards.model, wildcards.condition)


def model_inputs(wildcards):
    """The local files of the job's model (:func:`model_files`)."""
    return model_files(wildcards.model)


def model_spec(wildcards):
    """The job's model entry of config (source, dtype, device, ...)."""
    return config["models"][wildcards.model]


def model_tokenizer(wildcards):
    return tokenizer_spec(wildcards.model)


def model_memory(wildcards, attempt):
    """mem_mb of a job that holds the model; each retry asks for ``attempt`` times more."""
    return model_mem_mb(wildcards.model) * attempt


def model_gpus(wildcards):
    """One GPU for the model jobs of a model on ``device: cuda``."""
    return 1 if model_device(wildcards.model) == "cuda" else 0


def shard_row_range(wildcards):
    return shard_rows(wildcards.shard)


def shard_stores(wildcards):
    """Every shard store of the job's model, store and condition, in sample order."""
    return expand(
        f"{RESULTS}/{wildcards.model}/{wildcards.store}/shards/{wildcards.condition}/{{shard}}.zarr", shard=shards()
    )


def store_positions(wildcards):
    """The positions a store keeps: the last token (activations) or extraction.positions."""
    return "last" if wildcards.store == "activations" else config["extraction"]["positions"]


def store_row_chunk(wildcards):
    """Rows per chunk of rs: extraction.sample_chunk (last token) or extraction.token_chunk."""
    return config["extraction"]["sample_chunk" if wildcards.store == "activations" else "token_chunk"]


def extract_memory(wildcards, attempt):
    """A model job's memory plus a few row chunks of float32 (rows, 2L, D) (1 GB per chunk of
    1024 token rows at 64 x 4096)."""
    L, D = _DIMS[wildcards.model]
    chunk = store_row_chunk(wildcards) * 2 * L * D * 4
    return (model_mem_mb(wildcards.model) + int(4 * chunk / 1e6)) * attempt


def gather_memory(wildcards, attempt):
    """Two row chunks and the per-row/per-text arrays, with headroom."""
    L, D = _DIMS[wildcards.model]
    return (2000 + int(3 * store_row_chunk(wildcards) * 2 * L * D * 4 / 1e6)) * attempt


def position_store(wildcards):
    return f"{RESULTS}/{wildcards.model}/positions/{wildcards.condition}.zarr"


def view_bucket(wildcards):
    """The position bucket of the job's view, or None for the paper's view (last tokens)."""
    return wildcards.view.split("/")[1] if wildcards.view else None


def view_store(wildcards):
    """The store of the job's view: the last-token store, or the position store of a bucket."""
    return position_store(wildcards) if wildcards.view else activation_store(wildcards)


def bucket_view(bucket):
    """The {view} wildcard value of a position bucket."""
    return f"positions/{bucket}/"


def view_status_input(wildcards):
    """A bucket view's status (view_status rule); the paper's view has none."""
    return f"{RESULTS}/{wildcards.model}/{wildcards.view}status/{wildcards.condition}.json" if wildcards.view else []


def view_spec(wildcards):
    """open_view's arguments for a bucket view (bucket, cap, seed); None for the paper's view,
    so position options never re-run the paper's jobs."""
    if not wildcards.view:
        return None
    return {"bucket": view_bucket(wildcards), "cap": bucket_cap(), "seed": config["seed"]}


def view_n_components(wildcards):
    """PCs saved by fit_pca: pca.n_components, or positions.n_components for a bucket view."""
    return bucket_n_components(wildcards) if wildcards.view else config["pca"]["n_components"]


def paper_view(pattern):
    """An output pattern of a view rule, for the paper's view (the rules that only run there)."""
    return pattern.replace("{view}", "")


BUCKET_VIEWS = r"positions/[^/]+/"


def unit_block_range(wildcards):
    return unit_range(wildcards.model, wildcards.block)


def block_memory(wildcards, attempt):
    return block_mem_mb(wildcards.model, bucket_cap() if wildcards.view else config["n_samples"]) * attempt


def rotation_block_memory(wildcards, attempt):
    """A unit-block job plus the (units x shuffles x sublayers) permutations and null paths."""
    return (block_mem_mb(wildcards.model) + 1000) * attempt


def every_block(pattern):
    """Input function: ``pattern`` (with ``{model}``, ``{condition}`` and ``{block}``) for every
    unit block of the job's model, in block order (the gather rules' inputs)."""

    def blocks(wildcards):
        return expand(
            pattern,
            model=wildcards.model,
            view=wildcards.view,
            condition=wildcards.condition,
            block=unit_blocks(wildcards.model),
        )

    return blocks


def every_condition(pattern):
    """Input function: ``pattern`` (with ``{model}`` and ``{condition}``) for every condition of
    the job's model, in config order (the findings rule's inputs)."""

    def conditions(wildcards):
        return expand(pattern, model=wildcards.model, condition=CONDITIONS, view="")

    return conditions


def autoencoder_memory(wildcards, attempt):
    """A few sample chunks and the network, with headroom (the CAE streams the store)."""
    return (block_mem_mb(wildcards.model) + 2000) * attempt


def pca_memory(wildcards, attempt):
    """pca.memory_mb for the per-sublayer spectra plus three D x D float64 matrices."""
    return (1500 + config["pca"]["memory_mb"] + int(3 * 8 * d_model(wildcards.model) ** 2 / 1e6)) * attempt


def if_teleport(inputs):
    """``inputs`` if teleports are among perturbations.kinds, else no input (Fig 4D, F5c)."""
    return inputs if "teleport" in config["perturbations"]["kinds"] else []


def perturb_layers_of(wildcards):
    return perturb_layers(wildcards.model)


POSITIONS = config["extraction"]["positions"] != "last"
STORES = ["activations", "positions"] if POSITIONS else ["activations"]


def bucket_cap():
    """Tokens analysed per position bucket (positions.max_tokens_per_bucket, default n_samples)."""
    cap = config["positions"]["max_tokens_per_bucket"]
    return config["n_samples"] if cap is None else cap


def bucket_n_components(wildcards):
    """PCs of the per-bucket PCA: positions.n_components, "all" = D, null = pca.n_components."""
    n = config["positions"]["n_components"]
    return config["pca"]["n_components"] if n is None else (d_model(wildcards.model) if n == "all" else n)


def every_bucket_and_condition(pattern):
    """Input function: ``pattern`` for every analysed bucket and condition of the job's model
    (conditions outer, buckets inner, in config order)."""

    def paths(wildcards):
        return [
            pattern.format(model=wildcards.model, condition=c, view=bucket_view(b))
            for c in CONDITIONS
            for b in config["positions"]["buckets"]
        ]

    return paths


def all_targets():
    targets = []
    if "original" in CONDITIONS:
        targets += [f"{RESULTS}/findings.md", f"{RESULTS}/comparison/depth_profiles.png"]
    for m in MODELS:
        for c in CONDITIONS:
            targets += [
                store_path(m, c),
                f"{RESULTS}/{m}/figures/fig1_{c}.png",
                f"{RESULTS}/{m}/figures/fig2_{c}.png",
                f"{RESULTS}/{m}/rotations/{c}.summary.json",
                f"{RESULTS}/{m}/figures/fig3_{c}.png",
                f"{RESULTS}/{m}/figures/fig4_{c}.png",
                f"{RESULTS}/{m}/figures/perturbation_kinds_{c}.png",
            ]
        if POSITIONS:
            targets.append(f"{RESULTS}/{m}/figures/findings_by_position.png")
    return targets


def block_mem_mb(model, n_rows=None):
    """Memory of a unit-block job: a float64 (N, 2L, block) slab and a few working copies."""
    L, D = _DIMS[model]
    slab = (n_rows or config["n_samples"]) * 2 * L * config["analysis"]["unit_block"] * 8
    return int(1500 + 8 * slab / 1e6)


def _measured_tok_per_s(model):
    """Extraction throughput printed by an earlier run's logs (chunk lines), or None."""
    rates = []
    for log in sorted(Path(f"{RESULTS}/logs/{model}/activations/extract").glob("*/*.log")):
        found = re.findall(r"(\d+) tok/s", log.read_text(errors="replace"))
        if found:
            rates.append(float(found[-1]))
    return max(rates) if rates else None


def _store_current(model, condition):
    """Whether the activation store exists, is complete and holds this config's samples and
    seed (a store of an earlier config, e.g. configs/quick.yaml, will be re-extracted)."""
    path = Path(store_path(model, condition))
    if not path.exists():
        return False
    try:
        import zarr

        g = zarr.open_group(str(path), mode="r")
        return (
            bool(g.attrs.get("complete"))
            and g["rs"].shape[0] == config["n_samples"]
            and g.attrs.get("seed") == config["seed"]
        )
    except Exception:  # unreadable: it will be rebuilt
        return False


def runtime_estimate_message(cores):
    """What `onstart` prints: a rough run time per model and where progress and logs are."""
    from transformer_dynamics.progress import estimate_runtime, fmt_seconds

    pert = config["perturbations"]
    lines = []
    total = 0.0
    for m in MODELS:
        todo = [c for c in CONDITIONS if not _store_current(m, c)]
        runs = sum(pert["grid"] ** 2 if k == "teleport" else pert["n_random"] for k in pert["kinds"])
        rate = _measured_tok_per_s(m)
        est = estimate_runtime(
            n_layers(m),
            d_model(m),
            config["n_samples"],
            n_conditions=len(CONDITIONS),
            n_shuffles=config["rotations"]["n_shuffles"],
            unit_block=config["analysis"]["unit_block"],
            max_epochs=config["autoencoder"]["max_epochs"],
            perturb_runs=runs * len(perturb_layers(m)),
            tok_per_s=rate,
            cores=cores,
            position_buckets=len(config["positions"]["buckets"]) if POSITIONS else 0,
            position_cap=bucket_cap(),
        )
        est["total"] -= est["extraction"] * (1 - len(todo) / len(CONDITIONS))
        total += est["total"]
        how = f"{rate:.0f} tok/s measured in an earlier run" if rate else "throughput assumed from the model size"
        lines.append(
            f"  {m}: ~{fmt_seconds(est['total'])} (extraction of {len(todo)} condition(s) "
            f"~{fmt_seconds(est['extraction'] * len(todo) / len(CONDITIONS))}, {how})"
        )
    return "\n".join(
        [
            f"Estimated time from scratch with {cores} idle cores (a busy machine takes longer; "
            f"finished steps are skipped): ~{fmt_seconds(total)}"
        ]
        + lines
        + [
            "Long jobs print '[rule wildcards] step k/n (%), elapsed, ETA' lines here; "
            f"every job's full log is in {RESULTS}/logs/ (e.g. tail -f {RESULTS}/logs/<model>/activations/extract/<condition>/000.log)."
        ]
    )
