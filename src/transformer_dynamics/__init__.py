"""transformer-dynamics: the residual stream of a transformer LM as a dynamical system.

Implements Fernando & Guitchounts, "Transformer Dynamics: A neuroscientific approach to
interpretability of large language models" (arXiv 2502.12131), one module per stage; the
list of modules, what each computes and who may import whom is in docs/design.md.

The package never imports snakemake and never reads config.yaml: it is usable from a notebook.
"""

__version__ = "0.1.0"
