# Beyond the paper: every token position (extraction.positions: all | sample:K). A position
# store per model and condition, the analyses per position bucket, the CAE on pooled tokens,
# the findings per bucket and their figure (docs/positions.md). Nothing here runs with the
# default extraction.positions: last.


rule extract_positions:
    input:
        tokens=f"{RESULTS}/{{model}}/tokens/{{condition}}.parquet",
        corpus_meta=rules.filter_corpus.output.meta,
        model=model_inputs,
    output:
        store=directory(f"{RESULTS}/{{model}}/positions/{{condition}}.zarr"),
    log:
        f"{RESULTS}/logs/{{model}}/extract_positions/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/extract_positions/{{condition}}.tsv"
    conda:
        ENV
    threads: model_threads()
    resources:
        mem_mb=position_extract_memory,
        runtime=480,
        gpu=model_gpus,
    params:
        code=code("extract_positions.py"),
        model=model_spec,
        positions=config["extraction"]["positions"],
        include_bos=config["extraction"]["include_bos"],
        token_chunk=config["extraction"]["token_chunk"],
        unit_chunk=config["extraction"]["unit_chunk"],
        batch_size=config["batch_size"],
        seed=config["seed"],
    script:
        "../scripts/extract_positions.py"


rule position_bucket:
    input:
        store=rules.extract_positions.output.store,
    output:
        **{name: f"{RESULTS}/{{model}}/positions/{{condition}}/{{bucket}}/{name}.parquet" for name in POSITION_TABLES},
        status=f"{RESULTS}/{{model}}/positions/{{condition}}/{{bucket}}/status.json",
    log:
        f"{RESULTS}/logs/{{model}}/position_bucket/{{condition}}/{{bucket}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/position_bucket/{{condition}}/{{bucket}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=position_bucket_memory,
        runtime=240,
    params:
        code=code("position_bucket.py"),
        bucket="{bucket}",
        cap=bucket_cap(),
        min_tokens=config["positions"]["min_tokens"],
        unit_block=config["analysis"]["unit_block"],
        mi_grid=config["analysis"]["mi_grid"],
        correlation_pairs=config["analysis"]["correlation_pairs"],
        rotation={
            "n_shuffles": config["rotations"]["n_shuffles"],
            "null": config["rotations"]["null_model"],
            "trajectory": config["rotations"]["trajectory"],
            "extra_nulls": [n for n in config["rotations"]["extra_nulls"] if n != config["rotations"]["null_model"]],
        },
        n_components=bucket_n_components,
        memory_mb=config["pca"]["memory_mb"],
        seed=config["seed"],
    script:
        "../scripts/position_bucket.py"


rule position_autoencoder:
    input:
        store=rules.extract_positions.output.store,
    output:
        checkpoint=f"{RESULTS}/{{model}}/positions/{{condition}}/autoencoder/checkpoint.pt",
        curve=f"{RESULTS}/{{model}}/positions/{{condition}}/autoencoder/training_curve.csv",
        explained=f"{RESULTS}/{{model}}/positions/{{condition}}/autoencoder/explained_variance.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/position_autoencoder/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/position_autoencoder/{{condition}}.tsv"
    conda:
        ENV
    threads: 1  # as train_autoencoder (docs/speed.md)
    resources:
        mem_mb=autoencoder_memory,
        runtime=240,
        gpu=1 if config["autoencoder"]["device"] == "cuda" else 0,
    params:
        code=code("position_autoencoder.py"),
        cae=config["autoencoder"],
        cap=bucket_cap(),
        seed=config["seed"],
    script:
        "../scripts/position_autoencoder.py"


rule position_findings:
    input:
        **{
            name: every_bucket_and_condition(f"{RESULTS}/{{model}}/positions/{{condition}}/{{bucket}}/{name}.parquet")
            for name in POSITION_TABLES
        },
        status=every_bucket_and_condition(f"{RESULTS}/{{model}}/positions/{{condition}}/{{bucket}}/status.json"),
        cae=every_condition(rules.position_autoencoder.output.explained),
    output:
        csv=f"{RESULTS}/{{model}}/positions/findings_by_position.csv",
        cae=f"{RESULTS}/{{model}}/positions/cae_by_position.csv",
    log:
        f"{RESULTS}/logs/{{model}}/position_findings.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/position_findings.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code("position_findings.py"),
        conditions=CONDITIONS,
        buckets=config["positions"]["buckets"],
        tables=POSITION_TABLES,
        thresholds=config["findings"],
        n_components=bucket_n_components,
        twins=position_store_twins,
        seed=config["seed"],
    script:
        "../scripts/position_findings.py"


rule figure_positions:
    input:
        csv=rules.position_findings.output.csv,
        cae=rules.position_findings.output.cae,
    output:
        png=report(
            f"{RESULTS}/{{model}}/figures/findings_by_position.png",
            caption="../workflow/report/positions.rst",
            category="Findings by position",
            subcategory="{model}",
            labels={"model": "{model}"},
        ),
        pdf=f"{RESULTS}/{{model}}/figures/findings_by_position.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/figure_positions.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure_positions.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code("figure_positions.py"),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/figure_positions.py"
