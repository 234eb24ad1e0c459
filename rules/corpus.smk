# §2.1 Data: length filter, deduplication, seeded draw of n_samples texts.


rule filter_corpus:
    input:
        corpus=PLAN.corpus_files(),
    output:
        samples=f"{RESULTS}/corpus/samples.parquet",
        meta=f"{RESULTS}/corpus/corpus.json",
    log:
        f"{RESULTS}/logs/filter_corpus.log",
    benchmark:
        f"{RESULTS}/benchmarks/filter_corpus.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code("filter_corpus.py"),
        source=config["corpus"]["source"],
        split=config["corpus"]["split"],
        min_chars=config["corpus"]["min_chars"],
        max_chars=config["corpus"]["max_chars"],
        n_samples=config["n_samples"],
        seed=config["seed"],
    script:
        "../scripts/filter_corpus.py"
