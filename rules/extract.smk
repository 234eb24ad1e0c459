# §2.1 Capture: tokenise (BOS first; shuffled-token control), then capture the residual
# stream at the last token of every sample (and, beyond the paper, at the positions of
# extraction.positions), sharded over samples, into chunked Zarr stores of one format.


rule tokenize:
    input:
        samples=rules.filter_corpus.output.samples,
        corpus_meta=rules.filter_corpus.output.meta,
        model=model_inputs,
    output:
        tokens=expand(f"{RESULTS}/{{model}}/tokens/{{condition}}.parquet", condition=CONDITIONS, allow_missing=True),
    log:
        f"{RESULTS}/logs/{{model}}/tokenize.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/tokenize.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code("tokenize.py"),
        tokenizer=model_tokenizer,
        conditions=CONDITIONS,
        seed=config["seed"],
        long_texts=config["corpus"]["long_texts"],
        made_for=PLAN.corpus_made_for(),
    script:
        "../scripts/tokenize.py"


rule extract_shard:
    # One rule for both stores: {store} = activations (the last token, the paper) or positions
    # (extraction.positions, beyond the paper); each is sharded over samples the same way.
    input:
        tokens=f"{RESULTS}/{{model}}/tokens/{{condition}}.parquet",
        corpus_meta=rules.filter_corpus.output.meta,
        model=model_inputs,
    output:
        store=temp(directory(f"{RESULTS}/{{model}}/{{store}}/shards/{{condition}}/{{shard}}.zarr")),
    log:
        f"{RESULTS}/logs/{{model}}/{{store}}/extract/{{condition}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{store}}/extract/{{condition}}/{{shard}}.tsv"
    # Model jobs first: they take every core, so they start before 1-thread jobs fill the
    # cores; then the CAE (the longest 1-thread jobs, priority 5) starts next.
    priority: 10
    conda:
        ENV
    threads: model_threads()
    resources:
        mem_mb=extract_memory,
        runtime=240,
        gpu=model_gpus,
    params:
        made_for=PLAN.corpus_made_for(),
        code=code("extract_shard.py"),
        model=model_spec,
        rows=shard_row_range,
        positions=store_positions,
        include_bos=config["extraction"]["include_bos"],
        batch_size=config["batch_size"],
        row_chunk=store_row_chunk,
        unit_chunk=config["extraction"]["unit_chunk"],
        store_dtype=config["extraction"]["store_dtype"],
        seed=config["seed"],
    script:
        "../scripts/extract_shard.py"


rule gather_activations:
    input:
        shards=shard_stores,
    output:
        store=directory(f"{RESULTS}/{{model}}/{{store}}/{{condition}}.zarr"),
    log:
        f"{RESULTS}/logs/{{model}}/{{store}}/gather/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{store}}/gather/{{condition}}.tsv"
    priority: 5
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=gather_memory,
        runtime=60,
    params:
        code=code("gather_activations.py"),
    script:
        "../scripts/gather_activations.py"


rule verify_store:
    input:
        store=rules.gather_activations.output.store,
    output:
        report=f"{RESULTS}/{{model}}/{{store}}/{{condition}}.verified.json",
    log:
        f"{RESULTS}/logs/{{model}}/{{store}}/verify/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{store}}/verify/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=code("verify_store.py"),
    script:
        "../scripts/verify_store.py"


rule verify:
    # On demand: `snakemake --cores 1 verify --forcerun verify_store` re-checks every store.
    input:
        expand(rules.verify_store.output.report, model=MODELS, condition=CONDITIONS, store=STORES),
