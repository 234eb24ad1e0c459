# §2.8/§3.4 teleport perturbations, plus noise and swap perturbations (beyond the paper).


rule perturb:
    input:
        store=lambda w: store_path(w.model, w.condition),
        pca=f"{RESULTS}/{{model}}/pca/{{condition}}/pca.npz",
        trajectories=f"{RESULTS}/{{model}}/pca/{{condition}}/trajectories.parquet",
        model=lambda w: model_files(w.model),
    output:
        runs=expand(f"{RESULTS}/{{{{model}}}}/perturbations/{{{{condition}}}}/{{kind}}.parquet", kind=config["perturbations"]["kinds"]),
        metrics=expand(f"{RESULTS}/{{{{model}}}}/perturbations/{{{{condition}}}}/{{kind}}.metrics.parquet", kind=config["perturbations"]["kinds"]),
        control=f"{RESULTS}/{{model}}/perturbations/{{condition}}/control.parquet",
    params:
        code=code("perturbations.py"),
        model=lambda w: config["models"][w.model],
        kinds=config["perturbations"]["kinds"],
        layers=lambda w: perturb_layers(w.model),
        grid=config["perturbations"]["grid"],
        n_random=config["perturbations"]["n_random"],
        noise_scale=config["perturbations"]["noise_scale"],
        prompt=config["perturbations"]["prompt"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/{{model}}/perturb/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/perturb/{{condition}}.tsv"
    threads: model_threads()
    resources:
        mem_mb=lambda w, attempt: model_mem_mb(w.model) * attempt,
        runtime=60,
        gpu=lambda w: 1 if model_device(w.model) == "cuda" else 0,
    conda:
        ENV
    script:
        "../scripts/perturbations.py"
