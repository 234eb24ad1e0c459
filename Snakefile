# transformer-dynamics: the residual stream of transformer LMs as a dynamical system.
# Fernando & Guitchounts, arXiv 2502.12131. See README.md and docs/.


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# One rule file per section of the paper; each holds its analyses, its figure and the
# figure's report caption (README, "Layout").
include: "rules/common.smk"
include: "rules/corpus.smk"  # §2.1 data
include: "rules/extract.smk"  # §2.1 capture -> the activation store
include: "rules/stats.smk"  # §2.2-2.5, Fig 1
include: "rules/rotations.smk"  # §2.6, Fig 2
include: "rules/autoencoder.smk"  # §2.7, Fig 3
include: "rules/pca_perturb.smk"  # §2.8, Fig 4
include: "rules/findings.smk"  # the headline findings tested; models compared
include: "rules/positions.smk"  # beyond the paper: every token position


onstart:
    import sys

    try:
        cores = int(workflow.cores)
    except Exception:  # no --cores (e.g. a cluster executor)
        cores = 2
    print(PLAN.runtime_estimate_message(cores), file=sys.stderr)


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
