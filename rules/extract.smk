# §2.1 Capture: tokenise (BOS first; shuffled-token control), then capture the residual
# stream at the last token of every sample, sharded over samples, into a chunked Zarr store.


rule tokenize:
    input:
        samples=rules.filter_corpus.output.samples,
        model=lambda w: model_files(w.model),
    output:
        tokens=expand(f"{RESULTS}/{{model}}/tokens/{{condition}}.parquet", condition=CONDITIONS, allow_missing=True),
    params:
        code=code("tokenize.py"),
        tokenizer=lambda w: tokenizer_spec(w.model),
        conditions=CONDITIONS,
        seed=config["seed"],
        long_texts=config["corpus"]["long_texts"],
    log:
        f"{RESULTS}/logs/{{model}}/tokenize.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/tokenize.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        ENV
    script:
        "../scripts/tokenize.py"


rule extract_shard:
    input:
        tokens=f"{RESULTS}/{{model}}/tokens/{{condition}}.parquet",
        corpus_meta=rules.filter_corpus.output.meta,
        model=lambda w: model_files(w.model),
    output:
        store=temp(directory(f"{RESULTS}/{{model}}/activations/shards/{{condition}}/{{shard}}.zarr")),
    params:
        code=code("extract_shard.py"),
        model=lambda w: config["models"][w.model],
        rows=lambda w: shard_rows(w.shard),
        batch_size=config["batch_size"],
        sample_chunk=config["extraction"]["sample_chunk"],
        unit_chunk=config["extraction"]["unit_chunk"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/{{model}}/extract/{{condition}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/extract/{{condition}}/{{shard}}.tsv"
    threads: model_threads()
    resources:
        mem_mb=lambda w, attempt: model_mem_mb(w.model) * attempt,
        runtime=240,
        gpu=lambda w: 1 if model_device(w.model) == "cuda" else 0,
    conda:
        ENV
    script:
        "../scripts/extract_shard.py"


rule gather_activations:
    input:
        shards=lambda w: expand(
            f"{RESULTS}/{w.model}/activations/shards/{w.condition}/{{shard}}.zarr", shard=shards()
        ),
    output:
        store=directory(f"{RESULTS}/{{model}}/activations/{{condition}}.zarr"),
    params:
        code=code("gather_activations.py"),
        offsets=[shard_rows(s)[0] for s in shards()],
    log:
        f"{RESULTS}/logs/{{model}}/gather_activations/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/gather_activations/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/gather_activations.py"


rule verify_store:
    input:
        store=f"{RESULTS}/{{model}}/activations/{{condition}}.zarr",
    output:
        report=f"{RESULTS}/{{model}}/activations/{{condition}}.verified.json",
    params:
        code=code("verify_store.py"),
    log:
        f"{RESULTS}/logs/{{model}}/verify_store/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/verify_store/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/verify_store.py"


rule verify:
    # On demand: `snakemake --cores 1 verify --forcerun verify_store` re-checks every store.
    input:
        [f"{RESULTS}/{m}/activations/{c}.verified.json" for m in MODELS for c in CONDITIONS],
