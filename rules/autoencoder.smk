# §2.7 and Fig 3: the compressing autoencoder (streamed sample chunks) on a view (the paper's
# last tokens, or a position bucket: docs/positions.md) and the figure drawn from its tables.


rule train_autoencoder:
    input:
        store=view_store,
        status=view_status_input,
    output:
        checkpoint=f"{RESULTS}/{{model}}/{{view}}autoencoder/{{condition}}/checkpoint.pt",
        curve=f"{RESULTS}/{{model}}/{{view}}autoencoder/{{condition}}/training_curve.csv",
        codes=f"{RESULTS}/{{model}}/{{view}}autoencoder/{{condition}}/test_codes.parquet",
        distances=f"{RESULTS}/{{model}}/{{view}}autoencoder/{{condition}}/distances.parquet",
        explained=f"{RESULTS}/{{model}}/{{view}}autoencoder/{{condition}}/explained_variance.parquet",
        diagnostics=f"{RESULTS}/{{model}}/{{view}}autoencoder/{{condition}}/diagnostics.json",
    log:
        f"{RESULTS}/logs/{{model}}/{{view}}train_autoencoder/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/{{view}}train_autoencoder/{{condition}}.tsv"
    priority: 5
    conda:
        ENV
    # One thread: the CAE's matrices are small (256 x 576 and narrower), so a second
    # thread gains little and, with OMP_WAIT_POLICY=PASSIVE, loses (docs/speed.md); with
    # 1 thread the two conditions train side by side, and the result does not depend on
    # the machine's core count.
    threads: 1
    resources:
        mem_mb=autoencoder_memory,
        runtime=240,
        gpu=1 if config["autoencoder"]["device"] == "cuda" else 0,
    params:
        made_for=store_made_for,
        code=code("train_autoencoder.py"),
        cae=config["autoencoder"],
        seed=config["seed"],
        view=view_spec,
    script:
        "../scripts/train_autoencoder.py"


rule figure3:
    input:
        curve=paper_view(rules.train_autoencoder.output.curve),
        codes=paper_view(rules.train_autoencoder.output.codes),
        distances=paper_view(rules.train_autoencoder.output.distances),
        explained=paper_view(rules.train_autoencoder.output.explained),
        diagnostics=paper_view(rules.train_autoencoder.output.diagnostics),
    output:
        png=report(
            f"{RESULTS}/{{model}}/figures/fig3_{{condition}}.png",
            caption="../workflow/report/fig3.rst",
            category="Figure 3",
            subcategory="{model}",
            labels={"model": "{model}", "condition": "{condition}"},
        ),
        pdf=f"{RESULTS}/{{model}}/figures/fig3_{{condition}}.pdf",
    log:
        f"{RESULTS}/logs/{{model}}/figure3/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{model}}/figure3/{{condition}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code("figure3.py"),
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/figure3.py"
