# Beyond the paper: the headline findings as a tested table, and models side by side.


rule findings:
    input:
        units=lambda w: expand(f"{RESULTS}/{w.model}/stats/{{condition}}/units.parquet", condition=CONDITIONS),
        transitions=lambda w: expand(f"{RESULTS}/{w.model}/stats/{{condition}}/transitions.parquet", condition=CONDITIONS),
        sublayers=lambda w: expand(f"{RESULTS}/{w.model}/stats/{{condition}}/sublayers.parquet", condition=CONDITIONS),
        rotations=lambda w: expand(f"{RESULTS}/{w.model}/rotations/{{condition}}.parquet", condition=CONDITIONS),
        means=lambda w: expand(f"{RESULTS}/{w.model}/stats/{{condition}}/means.parquet", condition=CONDITIONS),
        n_pcs=lambda w: expand(f"{RESULTS}/{w.model}/pca/{{condition}}/n_pcs.parquet", condition=CONDITIONS),
        spectrum=lambda w: expand(f"{RESULTS}/{w.model}/pca/{{condition}}/spectrum.parquet", condition=CONDITIONS),
        teleport=lambda w: expand(f"{RESULTS}/{w.model}/perturbations/{{condition}}/teleport.metrics.parquet", condition=CONDITIONS) if "teleport" in config["perturbations"]["kinds"] else [],
    output:
        json=f"{RESULTS}/{{model}}/findings.json",
    params:
        code=code("findings.py"),
        conditions=CONDITIONS,
        thresholds=config["findings"],
        n_components=config["pca"]["n_components"],
        recovery_steps=config["findings"]["recovery_steps"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/{{model}}/findings.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/findings.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/findings.py"


rule findings_table:
    input:
        json=expand(f"{RESULTS}/{{model}}/findings.json", model=MODELS),
    output:
        md=report(f"{RESULTS}/findings.md", caption="../workflow/report/findings.rst", category="Findings"),
        csv=report(f"{RESULTS}/findings.csv", caption="../workflow/report/findings.rst", category="Findings"),
    params:
        code=code("findings_table.py"),
        models=MODELS,
    log:
        f"{RESULTS}/logs/findings_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/findings_table.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        "../scripts/findings_table.py"


rule compare_models:
    input:
        units=expand(f"{RESULTS}/{{model}}/stats/original/units.parquet", model=MODELS),
        transitions=expand(f"{RESULTS}/{{model}}/stats/original/transitions.parquet", model=MODELS),
        rotations=expand(f"{RESULTS}/{{model}}/rotations/original.parquet", model=MODELS),
        n_pcs=expand(f"{RESULTS}/{{model}}/pca/original/n_pcs.parquet", model=MODELS),
    output:
        png=report(f"{RESULTS}/comparison/depth_profiles.png", caption="../workflow/report/comparison.rst", category="Models compared"),
        pdf=f"{RESULTS}/comparison/depth_profiles.pdf",
    params:
        code=code("compare_models.py"),
        models=MODELS,
        dpi=config["figures"]["dpi"],
    log:
        f"{RESULTS}/logs/compare_models.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare_models.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/compare_models.py"
