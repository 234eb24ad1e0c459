# §2.6 phase portraits and rotation counts with a shuffle null, fanned out over unit blocks.


rule rotation_block:
    input:
        store=lambda w: store_path(w.model, w.condition),
    output:
        table=f"{RESULTS}/{{model}}/rotations/{{condition}}/blocks/{{block}}.parquet",
        traj=f"{RESULTS}/{{model}}/rotations/{{condition}}/blocks/{{block}}.traj.parquet",
        null=f"{RESULTS}/{{model}}/rotations/{{condition}}/blocks/{{block}}.null.parquet",
    params:
        code=code("rotation_block.py"),
        units=lambda w: unit_range(w.model, w.block),
        n_shuffles=config["rotations"]["n_shuffles"],
        null=config["rotations"]["null_model"],
        trajectory=config["rotations"]["trajectory"],
        extra_nulls=[n for n in config["rotations"]["extra_nulls"] if n != config["rotations"]["null_model"]],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/{{model}}/rotation_block/{{condition}}/{{block}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/rotation_block/{{condition}}/{{block}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: (block_mem_mb(w.model) + 1000) * attempt,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/rotation_block.py"


rule gather_rotations:
    input:
        table=lambda w: expand(f"{RESULTS}/{w.model}/rotations/{w.condition}/blocks/{{block}}.parquet", block=unit_blocks(w.model)),
        traj=lambda w: expand(f"{RESULTS}/{w.model}/rotations/{w.condition}/blocks/{{block}}.traj.parquet", block=unit_blocks(w.model)),
        null=lambda w: expand(f"{RESULTS}/{w.model}/rotations/{w.condition}/blocks/{{block}}.null.parquet", block=unit_blocks(w.model)),
    output:
        table=f"{RESULTS}/{{model}}/rotations/{{condition}}.parquet",
        traj=f"{RESULTS}/{{model}}/rotations/{{condition}}.trajectories.parquet",
        null=f"{RESULTS}/{{model}}/rotations/{{condition}}.null_sample.parquet",
        summary=f"{RESULTS}/{{model}}/rotations/{{condition}}.summary.json",
    params:
        code=code("gather_rotations.py"),
    log:
        f"{RESULTS}/logs/{{model}}/gather_rotations/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/gather_rotations/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        ENV
    script:
        "../scripts/gather_rotations.py"
