# §2.2-2.5 and Fig 1: per-unit statistics (fanned out over unit blocks), whole-vector
# statistics, and the figure drawn from their tables.


rule unit_block_stats:
    input:
        store=view_store,
        status=view_status_input,
    output:
        units=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/blocks/{{block}}.units.parquet",
        means=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/blocks/{{block}}.means.parquet",
        rdist=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/blocks/{{block}}.rdist.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}unit_block_stats/{{condition}}/{{block}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}unit_block_stats/{{condition}}/{{block}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=block_memory,
        runtime=60,
    params:
        made_for=store_made_for,
        code=code("unit_block_stats.py"),
        view=view_spec,
        units=unit_block_range,
        mi_grid=config["analysis"]["mi_grid"],
        correlation_pairs=config["analysis"]["correlation_pairs"],
    script:
        "../scripts/unit_block_stats.py"


rule gather_unit_stats:
    input:
        status=view_status_input,
        units=every_block(rules.unit_block_stats.output.units),
        means=every_block(rules.unit_block_stats.output.means),
        rdist=every_block(rules.unit_block_stats.output.rdist),
    output:
        units=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/units.parquet",
        means=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/means.parquet",
        rdist=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/correlation_distribution.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}gather_unit_stats/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}gather_unit_stats/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code("gather_unit_stats.py"),
    script:
        "../scripts/gather_unit_stats.py"


rule vector_stats:
    input:
        store=view_store,
        status=view_status_input,
    output:
        transitions=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/transitions.parquet",
        sublayers=f"{RESULTS}/{{model}}/{{view}}stats/{{condition}}/sublayers.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}vector_stats/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}vector_stats/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=block_memory,
        runtime=30,
    params:
        made_for=store_made_for,
        code=code("vector_stats.py"),
        view=view_spec,
    script:
        "../scripts/vector_stats.py"


rule figure1:
    input:
        units=rules.gather_unit_stats.output.units,
        means=rules.gather_unit_stats.output.means,
        rdist=rules.gather_unit_stats.output.rdist,
        transitions=rules.vector_stats.output.transitions,
        sublayers=rules.vector_stats.output.sublayers,
    output:
        png=report(
            f"{RESULTS}/{{model}}/{{view}}figures/fig1_{{condition}}.png",
            caption="../workflow/report/fig1.rst",
            category="Figure 1",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}"},
        ),
        pdf=f"{RESULTS}/{{model}}/{{view}}figures/fig1_{{condition}}.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}figure1/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}figure1/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("figure1.py"),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/figure1.py"
