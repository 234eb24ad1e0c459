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
        dpi=config["figures"]["dpi"],
    log:
        f"{RESULTS}/logs/{{model}}/figure1/{{condition}}.log",
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
        dpi=config["figures"]["dpi"],
        example_units=config["rotations"]["example_units"],
    log:
        f"{RESULTS}/logs/{{model}}/figure2/{{condition}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/figure2.py"
