# Beyond the paper: every token position (extraction.positions: all | sample:K). The position
# store is made by the extraction rules ({store} = positions) and every bucket is a view that
# the analysis rules fan out over unit blocks like the paper's ({view} = /positions/<bucket>);
# here: each bucket's status, the findings per bucket (with each bucket's CAE) and their
# figure (docs/positions.md). Nothing here runs with the default extraction.positions: last.


POSITION_TABLES = {
    "units": rules.gather_unit_stats.output.units,
    "means": rules.gather_unit_stats.output.means,
    "transitions": rules.vector_stats.output.transitions,
    "sublayers": rules.vector_stats.output.sublayers,
    "rotations": rules.gather_rotations.output.table,
    "n_pcs": rules.fit_pca.output.n_pcs,
    "spectrum": rules.fit_pca.output.spectrum,
}
"""The tables of one bucket view that the findings read."""


rule view_status:
    # Whether a position bucket can be analysed (tokens, not one repeated vector); every job of
    # the bucket's view reads it and writes empty tables for a bucket that cannot.
    input:
        store=position_store,
    output:
        status=f"{RESULTS}/{{model}}/{{view}}status/{{condition}}.json",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}view_status/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}view_status/{{condition}}.tsv"
    wildcard_constraints:
        view=BUCKET_VIEWS,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("view_status.py"),
        view=view_spec,
        min_tokens=config["positions"]["min_tokens"],
    script:
        "../scripts/view_status.py"


rule position_findings:
    input:
        **{name: every_bucket_and_condition(pattern) for name, pattern in POSITION_TABLES.items()},
        status=every_bucket_and_condition(rules.view_status.output.status),
        cae=every_bucket_and_condition(rules.train_autoencoder.output.explained),
    output:
        csv=f"{RESULTS}/{{model}}/positions/findings_by_position.csv",
        cae=f"{RESULTS}/{{model}}/positions/cae_by_position.csv",
    log:
        f"{RESULTS}/logs/{{model}}/position_findings.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/position_findings.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        code=code("position_findings.py"),
        conditions=CONDITIONS,
        buckets=config["positions"]["buckets"],
        tables=list(POSITION_TABLES),
        thresholds=config["findings"],
        n_components=bucket_view_components,
        seed=config["seed"],
    script:
        "../scripts/position_findings.py"


rule figure_positions:
    input:
        csv=rules.position_findings.output.csv,
        cae=rules.position_findings.output.cae,
    output:
        png=report(
            f"{RESULTS}/{{model}}/figures/findings_by_position.png",
            caption="../workflow/report/positions.rst",
            category="Findings by position",
            subcategory="{model}",
            labels={"model": "{model}"},
        ),
        pdf=f"{RESULTS}/{{model}}/figures/findings_by_position.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/figure_positions.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure_positions.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code("figure_positions.py"),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/figure_positions.py"
