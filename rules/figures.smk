# Figures read tables only: changing a plotting option never re-runs an analysis.


rule figure1:
    input:
        units=f"{RESULTS}/{{model}}/stats/{{condition}}/units.parquet",
        means=f"{RESULTS}/{{model}}/stats/{{condition}}/means.parquet",
        rdist=f"{RESULTS}/{{model}}/stats/{{condition}}/correlation_distribution.parquet",
        transitions=f"{RESULTS}/{{model}}/stats/{{condition}}/transitions.parquet",
        sublayers=f"{RESULTS}/{{model}}/stats/{{condition}}/sublayers.parquet",
    output:
        png=report(f"{RESULTS}/{{model}}/figures/fig1_{{condition}}.png", caption="../workflow/report/fig1.rst", category="Figure 1", subcategory="{model}", labels={"model": "{model}", "condition": "{condition}"}),
        pdf=f"{RESULTS}/{{model}}/figures/fig1_{{condition}}.pdf",
    params:
        code=code("figure1.py"),
        dpi=config["figures"]["dpi"],
    log:
        f"{RESULTS}/logs/{{model}}/figure1/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure1/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/figure1.py"


rule figure2:
    input:
        table=f"{RESULTS}/{{model}}/rotations/{{condition}}.parquet",
        traj=f"{RESULTS}/{{model}}/rotations/{{condition}}.trajectories.parquet",
        null=f"{RESULTS}/{{model}}/rotations/{{condition}}.null_sample.parquet",
    output:
        png=report(f"{RESULTS}/{{model}}/figures/fig2_{{condition}}.png", caption="../workflow/report/fig2.rst", category="Figure 2", subcategory="{model}", labels={"model": "{model}", "condition": "{condition}"}),
        pdf=f"{RESULTS}/{{model}}/figures/fig2_{{condition}}.pdf",
    params:
        code=code("figure2.py"),
        dpi=config["figures"]["dpi"],
        example_units=config["rotations"]["example_units"],
    log:
        f"{RESULTS}/logs/{{model}}/figure2/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure2/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/figure2.py"


rule figure3:
    input:
        curve=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/training_curve.csv",
        codes=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/test_codes.parquet",
        distances=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/distances.parquet",
        explained=f"{RESULTS}/{{model}}/autoencoder/{{condition}}/explained_variance.parquet",
    output:
        png=report(f"{RESULTS}/{{model}}/figures/fig3_{{condition}}.png", caption="../workflow/report/fig3.rst", category="Figure 3", subcategory="{model}", labels={"model": "{model}", "condition": "{condition}"}),
        pdf=f"{RESULTS}/{{model}}/figures/fig3_{{condition}}.pdf",
    params:
        code=code("figure3.py"),
        dpi=config["figures"]["dpi"],
    log:
        f"{RESULTS}/logs/{{model}}/figure3/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure3/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/figure3.py"


rule figure4:
    input:
        traj=f"{RESULTS}/{{model}}/pca/{{condition}}/trajectories.parquet",
        spectrum=f"{RESULTS}/{{model}}/pca/{{condition}}/spectrum.parquet",
        spectra=f"{RESULTS}/{{model}}/pca/{{condition}}/sublayer_spectra.parquet",
        n_pcs=f"{RESULTS}/{{model}}/pca/{{condition}}/n_pcs.parquet",
        control=f"{RESULTS}/{{model}}/perturbations/{{condition}}/control.parquet",
        teleport=f"{RESULTS}/{{model}}/perturbations/{{condition}}/teleport.parquet" if "teleport" in config["perturbations"]["kinds"] else [],
    output:
        png=report(f"{RESULTS}/{{model}}/figures/fig4_{{condition}}.png", caption="../workflow/report/fig4.rst", category="Figure 4", subcategory="{model}", labels={"model": "{model}", "condition": "{condition}"}),
        pdf=f"{RESULTS}/{{model}}/figures/fig4_{{condition}}.pdf",
    params:
        code=code("figure4.py"),
        dpi=config["figures"]["dpi"],
        arrow_steps=config["perturbations"]["arrow_steps"],
    log:
        f"{RESULTS}/logs/{{model}}/figure4/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure4/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/figure4.py"


rule figure_perturbation_kinds:
    input:
        metrics=expand(f"{RESULTS}/{{{{model}}}}/perturbations/{{{{condition}}}}/{{kind}}.metrics.parquet", kind=config["perturbations"]["kinds"]),
    output:
        png=report(f"{RESULTS}/{{model}}/figures/perturbation_kinds_{{condition}}.png", caption="../workflow/report/perturbation_kinds.rst", category="Perturbations", subcategory="{model}", labels={"model": "{model}", "condition": "{condition}"}),
        pdf=f"{RESULTS}/{{model}}/figures/perturbation_kinds_{{condition}}.pdf",
    params:
        code=code("figure_perturbation_kinds.py"),
        dpi=config["figures"]["dpi"],
    log:
        f"{RESULTS}/logs/{{model}}/figure_perturbation_kinds/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure_perturbation_kinds/{{condition}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/figure_perturbation_kinds.py"
