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


rule all:
    input:
        all_targets(),
    default_target: True
