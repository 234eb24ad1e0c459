# §2.2-2.5 per-unit statistics (fanned out over unit blocks) and whole-vector statistics.


rule unit_block_stats:
    input:
        store=lambda w: store_path(w.model, w.condition),
    output:
        units=f"{RESULTS}/{{model}}/stats/{{condition}}/blocks/{{block}}.units.parquet",
        means=f"{RESULTS}/{{model}}/stats/{{condition}}/blocks/{{block}}.means.parquet",
        rdist=f"{RESULTS}/{{model}}/stats/{{condition}}/blocks/{{block}}.rdist.parquet",
    params:
        code=code("unit_block_stats.py"),
        units=lambda w: unit_range(w.model, w.block),
        mi_grid=config["analysis"]["mi_grid"],
        correlation_pairs=config["analysis"]["correlation_pairs"],
    log:
        f"{RESULTS}/logs/{{model}}/unit_block_stats/{{condition}}/{{block}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/unit_block_stats/{{condition}}/{{block}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: block_mem_mb(w.model) * attempt,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/unit_block_stats.py"


rule gather_unit_stats:
    input:
        units=lambda w: expand(f"{RESULTS}/{w.model}/stats/{w.condition}/blocks/{{block}}.units.parquet", block=unit_blocks(w.model)),
        means=lambda w: expand(f"{RESULTS}/{w.model}/stats/{w.condition}/blocks/{{block}}.means.parquet", block=unit_blocks(w.model)),
        rdist=lambda w: expand(f"{RESULTS}/{w.model}/stats/{w.condition}/blocks/{{block}}.rdist.parquet", block=unit_blocks(w.model)),
    output:
        units=f"{RESULTS}/{{model}}/stats/{{condition}}/units.parquet",
        means=f"{RESULTS}/{{model}}/stats/{{condition}}/means.parquet",
        rdist=f"{RESULTS}/{{model}}/stats/{{condition}}/correlation_distribution.parquet",
    params:
        code=code("concat_tables.py"),
    log:
        f"{RESULTS}/logs/{{model}}/gather_unit_stats/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/gather_unit_stats/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        ENV
    script:
        "../scripts/concat_tables.py"


rule vector_stats:
    input:
        store=lambda w: store_path(w.model, w.condition),
    output:
        transitions=f"{RESULTS}/{{model}}/stats/{{condition}}/transitions.parquet",
        sublayers=f"{RESULTS}/{{model}}/stats/{{condition}}/sublayers.parquet",
    params:
        code=code("vector_stats.py"),
    log:
        f"{RESULTS}/logs/{{model}}/vector_stats/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/vector_stats/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: block_mem_mb(w.model) * attempt,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/vector_stats.py"
