"""Named random streams (transformer_dynamics.seeds): independent, stable, checked."""
import itertools

import numpy as np
import pytest

from transformer_dynamics import autoencoder as cae
from transformer_dynamics import seeds
from transformer_dynamics.corpus import shuffle_tokens
from transformer_dynamics.rotations import unit_permutations


def _draw(name, seed, *keys):
    return seeds.stream(name, seed, *keys).integers(0, 2**62, size=8)


def test_streams_never_share_draws():
    """Every (stream, keys) pair, with keys of 0 and small integers, draws its own numbers:
    including the cases bare lists confused (a trailing 0 key, [seed, 2] in two modules)."""
    draws = {}
    for name in seeds.STREAMS:
        for keys in [(), (0,), (1,), (2,), (0, 0), (2, 0), (3, 1), (3, 2)]:
            draws[(name, keys)] = tuple(_draw(name, 0, *keys))
    assert len(set(draws.values())) == len(draws)


def test_bare_lists_collided_and_streams_do_not():
    """The motivating collisions: default_rng([s, 0]) == default_rng(s), and the autoencoder's
    old split stream [s, 2] was rotation unit 2's stream."""
    assert np.random.default_rng([0, 0]).random() == np.random.default_rng(0).random()
    split = cae.split_samples(60, [0.6, 0.2, 0.2], seed=0)
    perm = np.random.default_rng([0, 2]).permutation(60)
    assert not np.array_equal(np.sort(perm[:36]), split["train"])
    assert not np.array_equal(unit_permutations(2, 1, 60, 0)[0], seeds.stream("autoencoder.split", 0).permutation(60))


def test_stream_ids_are_fixed():
    """Ids are append-only: renumbering one would silently change every number drawn from it."""
    assert seeds.STREAMS["corpus.draw"] == 1 and seeds.STREAMS["rotations.null"] == 5
    assert seeds.STREAMS["models.init"] == 11
    ids = list(seeds.STREAMS.values())
    assert len(set(ids)) == len(ids) and sorted(ids) == ids


def test_stream_is_deterministic_and_keyed():
    assert np.array_equal(_draw("rotations.null", 7, 3), _draw("rotations.null", 7, 3))
    assert not np.array_equal(_draw("rotations.null", 7, 3), _draw("rotations.null", 8, 3))
    assert not np.array_equal(_draw("rotations.null", 7, 3), _draw("rotations.null", 7, 4))
    # a shuffled text depends on (seed, sample id) only
    a, _ = shuffle_tokens(list(range(20)), 5, 11)
    b, _ = shuffle_tokens(list(range(20)), 5, 11)
    c, _ = shuffle_tokens(list(range(20)), 5, 12)
    assert a == b and a != c and a[0] == 0 and sorted(a) == list(range(20))


def test_torch_seed_fits_manual_seed():
    torch = pytest.importorskip("torch")
    s = seeds.torch_seed("autoencoder.init", 0)
    assert 0 <= s < 2**63
    torch.manual_seed(s)
    assert s != seeds.torch_seed("models.init", 0)


@pytest.mark.parametrize("seed,keys", [(-1, ()), (2**32, ()), (0, (2**32,)), (0, (-3,))])
def test_out_of_range_parts_are_refused(seed, keys):
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        seeds.stream("rotations.null", seed, *keys)


def test_unknown_stream_is_refused():
    with pytest.raises(KeyError, match="unknown random stream 'rotation'"):
        seeds.stream("rotation", 0)


def test_split_keeps_texts_together():
    """A bucket view's CAE split: every row of a text in one part; rows cover the view once."""
    rng = np.random.default_rng()
    groups = np.sort(rng.integers(0, 40, size=300))
    sp = cae.split_samples(300, [0.6, 0.2, 0.2], seed=int(rng.integers(100)), groups=groups)
    parts = [set(groups[sp[k]]) for k in ("train", "validation", "test")]
    for a, b in itertools.combinations(parts, 2):
        assert not a & b
    assert np.array_equal(np.sort(np.concatenate(list(sp.values()))), np.arange(300))
    n_texts = len(np.unique(groups))
    assert len(parts[0]) == round(0.6 * n_texts)
    # one row per text: the same split as no groups
    same = cae.split_samples(50, [0.6, 0.2, 0.2], 3, groups=np.arange(50))
    plain = cae.split_samples(50, [0.6, 0.2, 0.2], 3)
    assert all(np.array_equal(same[k], plain[k]) for k in plain)
