# Beyond the paper: the headline findings as a tested table, and models side by side.


rule findings:
    input:
        units=every_condition(rules.gather_unit_stats.output.units),
        transitions=every_condition(rules.vector_stats.output.transitions),
        sublayers=every_condition(rules.vector_stats.output.sublayers),
        rotations=every_condition(rules.gather_rotations.output.table),
        means=every_condition(rules.gather_unit_stats.output.means),
        n_pcs=every_condition(rules.fit_pca.output.n_pcs),
        spectrum=every_condition(rules.fit_pca.output.spectrum),
        teleport=if_teleport(
            every_condition(f"{RESULTS}/{{model}}/perturbations/{{condition}}/teleport.metrics.parquet")
        ),
    output:
        json=f"{RESULTS}/{{model}}/findings.json",
    log:
        f"{RESULTS}/logs/{{model}}/findings.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/findings.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("findings.py"),
        conditions=CONDITIONS,
        thresholds=config["findings"],
        n_components=config["pca"]["n_components"],
        seed=config["seed"],
    script:
        "../scripts/findings.py"


rule findings_table:
    input:
        json=expand(rules.findings.output.json, model=MODELS),
        positions=expand(f"{RESULTS}/{{model}}/positions/findings_by_position.csv", model=MODELS) if POSITIONS else [],
        cae=expand(rules.train_autoencoder.output.diagnostics, model=MODELS, condition=CONDITIONS, view=""),
    output:
        md=report(f"{RESULTS}/findings.md", caption="../workflow/report/findings.rst", category="Findings"),
        csv=report(f"{RESULTS}/findings.csv", caption="../workflow/report/findings.rst", category="Findings"),
    log:
        f"{RESULTS}/logs/findings_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/findings_table.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code("findings_table.py"),
        models=MODELS,
        conditions=CONDITIONS,
    script:
        "../scripts/findings_table.py"


rule compare_models:
    input:
        units=expand(rules.gather_unit_stats.output.units, model=MODELS, condition="original", view=""),
        transitions=expand(rules.vector_stats.output.transitions, model=MODELS, condition="original", view=""),
        rotations=expand(rules.gather_rotations.output.table, model=MODELS, condition="original", view=""),
        n_pcs=expand(rules.fit_pca.output.n_pcs, model=MODELS, condition="original", view=""),
    output:
        png=report(
            f"{RESULTS}/comparison/depth_profiles.png",
            caption="../workflow/report/comparison.rst",
            category="Models compared",
        ),
        pdf=f"{RESULTS}/comparison/depth_profiles.pdf",
    log:
        f"{RESULTS}/logs/compare_models.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare_models.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("compare_models.py"),
        models=MODELS,
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/compare_models.py"
