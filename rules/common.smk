# Config validation, and the names the rule headers use. What is computed from the config
# (shapes, shards, unit blocks, views, inputs, targets, memory, the runtime estimate) lives in
# transformer_dynamics.jobs (a Plan); here are only its wildcard-taking faces.

import re
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

from transformer_dynamics.jobs import BUCKET_LABELS, bucket_views, plan_config  # noqa: E402
from transformer_dynamics.provenance import script_code_sha256  # noqa: E402

PLAN = plan_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml", validate)
MODELS, CONDITIONS, RESULTS, POSITIONS, STORES = PLAN.models, PLAN.conditions, PLAN.results, PLAN.positions, PLAN.stores
ENV = "../envs/transformer-dynamics.yaml"
BUCKET_VIEWS = r"positions/[^/]+/"
_BUCKETS = "|".join(re.escape(b) for b in BUCKET_LABELS)


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    condition="original|shuffled",
    block=r"\d+",
    shard=r"\d+",
    bucket=_BUCKETS,
    store="activations|positions",
    # what an analysis runs on, as a directory prefix: "" = the paper's last tokens
    # (results/<model>/stats/...), "positions/<bucket>/" = one position bucket (views.py)
    view=f"(|positions/({_BUCKETS})/)",


def code(script):
    """Hash of the package modules a rule's script uses (transitively): as a param, a change
    of that code re-runs the rule (Snakemake's params trigger), and only that rule."""
    return script_code_sha256(Path(workflow.basedir) / "scripts" / script)


def model_threads():
    """Threads of the model jobs: every core of --cores locally (one model in memory at a
    time), the job's own allocation inside SLURM, else 1 (raise with --set-threads)."""
    from transformer_dynamics.rulelog import slurm_allocated_cpus

    return slurm_allocated_cpus() or workflow.resource_settings.cores or 1


def model_gpus(wildcards):
    """One GPU for the model jobs of a model on ``device: cuda``."""
    dev = config["models"][wildcards.model]["device"]
    if dev == "auto":
        from transformer_dynamics.models import resolve_device

        dev = resolve_device("auto")
    return 1 if dev == "cuda" else 0


# Input, param and resource functions (wildcards -> value), named for what they mean.
def activation_store(w):
    return PLAN.store_path(w.model, w.condition)


def position_store(w):
    return PLAN.store_path(w.model, w.condition, "positions")


def view_store(w):
    return position_store(w) if w.view else activation_store(w)


def view_status_input(w):
    return f"{RESULTS}/{w.model}/{w.view}status/{w.condition}.json" if w.view else []


def paper_view(pattern):
    """An output pattern of a view rule, for the paper's view (the rules that only run there)."""
    return pattern.replace("{view}", "")


def _of(method, *keys):
    """A param/input function: ``PLAN.<method>`` of the job's wildcards ``keys``."""
    return lambda w: getattr(PLAN, method)(*(getattr(w, k) for k in keys))


def _mem(method, *keys):
    """A resource function: ``PLAN.<method>`` (MB) of the job's wildcards, x attempt on a retry."""
    return lambda w, attempt: getattr(PLAN, method)(*(getattr(w, k) for k in keys)) * attempt


model_inputs, model_tokenizer = _of("model_files", "model"), _of("tokenizer_spec", "model")
shard_row_range, unit_block_range = _of("shard_rows", "shard"), _of("unit_range", "model", "block")
store_positions, store_row_chunk = _of("store_positions", "store"), _of("row_chunk", "store")
view_spec, view_n_components = _of("view_spec", "view"), _of("n_components", "model", "view")
perturb_layers_of = _of("perturb_layers", "model")
store_made_for = lambda w: PLAN.store_made_for(w.model, w.condition, "positions" if w.get("view") else "activations")
model_memory, autoencoder_memory, pca_memory = (
    _mem(f, "model") for f in ("model_mem_mb", "autoencoder_mem_mb", "pca_mem_mb")
)
extract_memory, gather_memory = _mem("extract_mem_mb", "model", "store"), _mem("gather_mem_mb", "model", "store")
block_memory, rotation_block_memory = (_mem(f, "model", "view") for f in ("block_mem_mb", "rotation_block_mem_mb"))


def model_spec(w):
    return config["models"][w.model]


def shard_stores(w):
    return [f"{RESULTS}/{w.model}/{w.store}/shards/{w.condition}/{s}.zarr" for s in PLAN.shards()]


def if_teleport(inputs):
    """``inputs`` if teleports are among perturbations.kinds, else no input (Fig 4D, F5c)."""
    return inputs if "teleport" in config["perturbations"]["kinds"] else []


def every_block(pattern):
    """``pattern`` for every unit block of the job's model and view, in block order (gathers)."""
    return lambda w: expand(pattern, model=w.model, view=w.view, condition=w.condition, block=PLAN.unit_blocks(w.model))


def every_condition(pattern):
    """``pattern`` of the paper's view for every condition of the job's model, in config order."""
    return lambda w: expand(pattern, model=w.model, condition=CONDITIONS, view="")


def every_bucket_and_condition(pattern):
    """``pattern`` for every analysed bucket view and condition (conditions outer, buckets inner)."""
    views = bucket_views(config["positions"]["buckets"])
    return lambda w: [pattern.format(model=w.model, condition=c, view=v) for c in CONDITIONS for v in views]


def bucket_view_components(w):
    """PCs of the bucket views' PCA (positions.n_components; the findings' thresholds)."""
    return PLAN.n_components(w.model, "positions/all/")
