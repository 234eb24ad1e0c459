"""Named random streams: every random draw of the workflow comes from one of these.

A stream is named for what it draws (``"rotations.null"``: the shuffle permutations of the
phase-portrait null, §2.6) and keyed by the integers that make its draws independent of the
order jobs run in (a unit, a sample id, a layer). Its generator is seeded by

    SeedSequence([STREAMS[name], len(keys), seed, *keys])

so two streams never share a draw: the stream's id comes first and is fixed forever in
:data:`STREAMS` (a new stream gets a new id; an id is never reused or renumbered), the number
of keys comes second, so a key of 0 cannot be confused with a missing key (NumPy's
``SeedSequence`` treats trailing zero words as absent: ``default_rng([0, 0])`` is
``default_rng(0)``). Every part must be an integer in ``[0, 2**32)``, one entropy word each, so
a large value cannot spill into the next word.

Before this module the draws used bare lists such as ``default_rng([seed, 2])``, which
collided: the autoencoder's split drew exactly the permutations of rotation unit 2 and of
sample 2's shuffle, and the corpus draw (``default_rng(seed)``) equalled rotation unit 0's
stream. The change of streams changed every number that depends on a draw (CHANGELOG.md).
"""

from __future__ import annotations

import numpy as np

#: Stream name -> fixed id. Append only: never reuse or renumber an id.
STREAMS: dict[str, int] = {
    "corpus.draw": 1,          # which texts are the N samples (§2.1)
    "corpus.shuffle": 2,       # token permutation of one sample in the shuffled control (§2.1)
    "positions.sample": 3,     # positions kept per text for extraction.positions: sample:K
    "positions.bucket": 4,     # rows of a position bucket drawn down to its cap
    "rotations.null": 5,       # shuffle permutations of one unit (§2.6)
    "autoencoder.split": 6,    # train/validation/test split of the samples (§2.7)
    "autoencoder.init": 7,     # the CAE's initial weights (torch)
    "autoencoder.batches": 8,  # the order of training samples per epoch
    "perturb.draw": 9,         # noise vectors / swap donors of a perturbation kind at a layer
    "findings.bootstrap": 10,  # bootstrap resamples of a finding's Spearman rho
    "models.init": 11,         # weights of a random-init model (torch)
    "views.bucket_cae": 12,    # the samples of a bucket's CAE fit
}

_WORD = 2**32


def _entropy(name: str, seed: int, keys: tuple[int, ...]) -> list[int]:
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; streams are {', '.join(STREAMS)} (seeds.STREAMS)")
    words = [STREAMS[name], len(keys), int(seed), *(int(k) for k in keys)]
    bad = [w for w in words if not 0 <= w < _WORD]
    if bad:
        raise ValueError(f"random stream {name!r}: seed and keys must be integers in [0, 2**32), got {bad}")
    return words


def stream(name: str, seed: int, *keys: int) -> np.random.Generator:
    """The NumPy generator of stream ``name`` for ``seed`` and ``keys``.

    Examples
    --------
    >>> a = stream("rotations.null", 0, 2).permutation(5)
    >>> b = stream("autoencoder.split", 0).permutation(5)   # independent of a
    """
    return np.random.default_rng(np.random.SeedSequence(_entropy(name, seed, keys)))


def torch_seed(name: str, seed: int, *keys: int) -> int:
    """A 63-bit integer for ``torch.manual_seed`` / ``torch.Generator.manual_seed`` from stream ``name``."""
    ss = np.random.SeedSequence(_entropy(name, seed, keys))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
