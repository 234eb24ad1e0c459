"""The figures: one module per analysis, each figure drawn from the analysis' tables.

Figures are made from tables, never from the activation store, so a plotting change never
re-runs an analysis (and no module here imports :mod:`transformer_dynamics.store`).

- :mod:`.stats`: Fig 1 (correlation, cosine similarity, magnitude, velocity, MI; §2.2-2.5);
- :mod:`.rotations`: Fig 2 (phase portraits and rotations with their null; §2.6);
- :mod:`.autoencoder`: Fig 3 (the compressing autoencoder; §2.7);
- :mod:`.pca`: Fig 4 and the perturbation kinds (§2.8, §3.4);
- :mod:`.models`: the models compared side by side;
- :mod:`.positions`: the findings by token position;
- :mod:`.style`: what they share (style, colours, axis helpers, :func:`~.style.save`).

Each figure function takes the tables written by the analysis rules and returns a matplotlib
Figure; :func:`~.style.save` writes it as PNG and PDF.
"""
