# transformer-dynamics: the residual stream of transformer LMs as a dynamical system.
# Fernando & Guitchounts, arXiv 2502.12131. See README.md and docs/.

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/extract.smk"
include: "rules/stats.smk"
include: "rules/rotations.smk"
include: "rules/trajectories.smk"
include: "rules/perturb.smk"
include: "rules/findings.smk"
include: "rules/figures.smk"


onstart:
    import sys

    try:
        cores = int(workflow.cores)
    except Exception:  # no --cores (e.g. a cluster executor)
        cores = 2
    print(runtime_estimate_message(cores), file=sys.stderr)


rule all:
    input:
        all_targets(),
    default_target: True
