# §2.7-2.8 trajectories in reduced spaces: PCA (exact, streamed) and the compressing autoencoder.


rule fit_pca:
    input:
        store=lambda w: store_path(w.model, w.condition),
    output:
        model=f"{RESULTS}/{{model}}/pca/{{condition}}/pca.npz",
        trajectories=f"{RESULTS}/{{model}}/pca/{{condition}}/trajectories.parquet",
        spectrum=f"{RESULTS}/{{model}}/pca/{{condition}}/spectrum.parquet",
        sublayer_spectra=f"{RESULTS}/{{model}}/pca/{{condition}}/sublayer_spectra.parquet",
        n_pcs=f"{RESULTS}/{{model}}/pca/{{condition}}/n_pcs.parquet",
    params:
        code=code("fit_pca.py"),
        n_components=config["pca"]["n_components"],
        memory_mb=config["pca"]["memory_mb"],
    log:
        f"{RESULTS}/logs/{{model}}/fit_pca/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/fit_pca/{{condition}}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: (1500 + config["pca"]["memory_mb"] + int(3 * 8 * d_model(w.model) ** 2 / 1e6)) * attempt,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/fit_pca.py"


rule train_autoencoder:
    input:
        store=lambda w: store_path(w.model, w.condition),
    output:
        checkpoint=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/checkpoint.pt",
        curve=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/training_curve.csv",
        codes=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/test_codes.parquet",
        distances=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/distances.parquet",
        explained=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/explained_variance.parquet",
    params:
        code=code("train_autoencoder.py"),
        cae=config["autoencoder"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/{{model}}/train_autoencoder/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/train_autoencoder/{{condition}}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: (block_mem_mb(w.model) + 2000) * attempt,
        runtime=240,
        gpu=1 if config["autoencoder"]["device"] == "cuda" else 0,
    conda:
        ENV
    script:
        "../scripts/train_autoencoder.py"
