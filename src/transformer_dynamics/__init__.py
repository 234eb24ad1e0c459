"""transformer-dynamics: the residual stream of a transformer LM as a dynamical system.

Implements Fernando & Guitchounts, "Transformer Dynamics: A neuroscientific approach to
interpretability of large language models" (arXiv 2502.12131). One module per stage:

- :mod:`corpus`      -- text filtering, sampling, tokenisation, shuffled control (§2.1)
- :mod:`models`      -- loading models (embedded GGUF, hub id, local dir, random init)
- :mod:`sublayers`   -- the sublayer convention: labels ``L03.mlp``, row of a layer's capture points
- :mod:`capture`     -- residual-stream capture at the last token with forward hooks (§2.1)
- :mod:`extraction`  -- chunked, resumable capture into a store; gathering shards (§2.1)
- :mod:`store`       -- the chunked Zarr activation store; :class:`store.ActivationStore` reads it
- :mod:`unit_stats`  -- means, correlation, cosine similarity, velocity (§2.2-2.4)
- :mod:`mutual_info` -- KDE mutual information, fast and reference (§2.5)
- :mod:`rotations`   -- phase portraits and rotation counts with nulls (§2.6)
- :mod:`autoencoder` -- compressing autoencoder (§2.7)
- :mod:`pca`         -- PCA trajectories (§2.8)
- :mod:`perturb`     -- teleport and other perturbations (§2.8, §3.4)
- :mod:`findings`    -- the headline findings as tests with nulls and verdicts
- :mod:`tables`      -- per-block tables gathered into one
- :mod:`plotting`    -- what every figure shares; one module per figure:
  :mod:`plot_stats` (Fig 1), :mod:`plot_rotations` (Fig 2), :mod:`plot_autoencoder` (Fig 3),
  :mod:`plot_pca` (Fig 4, perturbation kinds), :mod:`plot_models` (models compared)

The package never imports snakemake and never reads config.yaml: it is usable from a notebook.
"""

__version__ = "0.1.0"
