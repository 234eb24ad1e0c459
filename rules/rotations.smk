# §2.6 and Fig 2: phase portraits and rotation counts with a shuffle null (fanned out over
# unit blocks), gathered with Benjamini-Hochberg, and the figure drawn from their tables.


rule rotation_block:
    input:
        store=view_store,
        status=view_status_input,
    output:
        table=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}/blocks/{{block}}.parquet",
        traj=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}/blocks/{{block}}.traj.parquet",
        null=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}/blocks/{{block}}.null.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}rotation_block/{{condition}}/{{block}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}rotation_block/{{condition}}/{{block}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=rotation_block_memory,
        runtime=30,
    params:
        made_for=store_made_for,
        code=code("rotation_block.py"),
        view=view_spec,
        units=unit_block_range,
        n_shuffles=config["rotations"]["n_shuffles"],
        null=config["rotations"]["null_model"],
        trajectory=config["rotations"]["trajectory"],
        extra_nulls=[n for n in config["rotations"]["extra_nulls"] if n != config["rotations"]["null_model"]],
        seed=config["seed"],
    script:
        "../scripts/rotation_block.py"


rule gather_rotations:
    input:
        status=view_status_input,
        table=every_block(rules.rotation_block.output.table),
        traj=every_block(rules.rotation_block.output.traj),
        null=every_block(rules.rotation_block.output.null),
    output:
        table=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}.parquet",
        traj=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}.trajectories.parquet",
        null=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}.null_sample.parquet",
        summary=f"{RESULTS}/{{model}}/{{view}}rotations/{{condition}}.summary.json",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}gather_rotations/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}gather_rotations/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code("gather_rotations.py"),
    script:
        "../scripts/gather_rotations.py"


rule figure2:
    input:
        table=rules.gather_rotations.output.table,
        traj=rules.gather_rotations.output.traj,
        null=rules.gather_rotations.output.null,
    output:
        png=report(
            f"{RESULTS}/{{model}}/{{view}}figures/fig2_{{condition}}.png",
            caption="../workflow/report/fig2.rst",
            category="Figure 2",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}"},
        ),
        pdf=f"{RESULTS}/{{model}}/{{view}}figures/fig2_{{condition}}.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}figure2/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}figure2/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("figure2.py"),
        dpi=config["figures"]["dpi"],
        example_units=config["rotations"]["example_units"],
    script:
        "../scripts/figure2.py"
