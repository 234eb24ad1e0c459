# §2.8, §3.4 and Fig 4: PCA (exact, streamed), teleport perturbations of a control prompt
# in the PC plane (plus noise and swap perturbations, beyond the paper), and the figures
# drawn from their tables.


rule fit_pca:
    input:
        store=view_store,
        status=view_status_input,
    output:
        model=f"{RESULTS}/{{model}}/{{view}}pca/{{condition}}/pca.npz",
        trajectories=f"{RESULTS}/{{model}}/{{view}}pca/{{condition}}/trajectories.parquet",
        spectrum=f"{RESULTS}/{{model}}/{{view}}pca/{{condition}}/spectrum.parquet",
        sublayer_spectra=f"{RESULTS}/{{model}}/{{view}}pca/{{condition}}/sublayer_spectra.parquet",
        n_pcs=f"{RESULTS}/{{model}}/{{view}}pca/{{condition}}/n_pcs.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}fit_pca/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}fit_pca/{{condition}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=pca_memory,
        runtime=60,
        gpu=1 if config["pca"]["device"] == "cuda" else 0,
    params:
        made_for=store_made_for,
        code=code("fit_pca.py"),
        device=config["pca"]["device"],
        view=view_spec,
        n_components=view_n_components,
        memory_mb=config["pca"]["memory_mb"],
    script:
        "../scripts/fit_pca.py"


rule perturb:
    input:
        store=activation_store,
        pca=paper_view(rules.fit_pca.output.model),
        trajectories=paper_view(rules.fit_pca.output.trajectories),
        model=model_inputs,
    output:
        runs=expand(
            f"{RESULTS}/{{{{model}}}}/perturbations/{{{{condition}}}}/{{kind}}.parquet",
            kind=config["perturbations"]["kinds"],
        ),
        metrics=expand(
            f"{RESULTS}/{{{{model}}}}/perturbations/{{{{condition}}}}/{{kind}}.metrics.parquet",
            kind=config["perturbations"]["kinds"],
        ),
        control=f"{RESULTS}/{{model}}/perturbations/{{condition}}/control.parquet",
    log:
        f"{RESULTS}/logs/{{model}}/perturb/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/perturb/{{condition}}.tsv"
    conda:
        ENV
    threads: model_threads()
    resources:
        mem_mb=model_memory,
        runtime=60,
        gpu=model_gpus,
    params:
        made_for=store_made_for,
        code=code("perturb.py"),
        model=model_spec,
        kinds=config["perturbations"]["kinds"],
        layers=perturb_layers_of,
        grid=config["perturbations"]["grid"],
        n_random=config["perturbations"]["n_random"],
        noise_scale=config["perturbations"]["noise_scale"],
        prompt=config["perturbations"]["prompt"],
        seed=config["seed"],
    script:
        "../scripts/perturb.py"


rule figure4:
    input:
        traj=paper_view(rules.fit_pca.output.trajectories),
        spectrum=paper_view(rules.fit_pca.output.spectrum),
        spectra=paper_view(rules.fit_pca.output.sublayer_spectra),
        n_pcs=paper_view(rules.fit_pca.output.n_pcs),
        control=rules.perturb.output.control,
        teleport=if_teleport(f"{RESULTS}/{{model}}/perturbations/{{condition}}/teleport.parquet"),
    output:
        png=report(
            f"{RESULTS}/{{model}}/figures/fig4_{{condition}}.png",
            caption="../workflow/report/fig4.rst",
            category="Figure 4",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}"},
        ),
        pdf=f"{RESULTS}/{{model}}/figures/fig4_{{condition}}.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/figure4/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure4/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("figure4.py"),
        dpi=config["figures"]["dpi"],
        arrow_steps=config["perturbations"]["arrow_steps"],
    script:
        "../scripts/figure4.py"


rule figure_perturbation_kinds:
    input:
        metrics=rules.perturb.output.metrics,
    output:
        png=report(
            f"{RESULTS}/{{model}}/figures/perturbation_kinds_{{condition}}.png",
            caption="../workflow/report/perturbation_kinds.rst",
            category="Perturbations",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}"},
        ),
        pdf=f"{RESULTS}/{{model}}/figures/perturbation_kinds_{{condition}}.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/figure_perturbation_kinds/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure_perturbation_kinds/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("figure_perturbation_kinds.py"),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/figure_perturbation_kinds.py"
