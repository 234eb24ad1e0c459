"""Helpers to run the real Snakefile on a tiny config in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_tiny_local_model(path: Path, seed: int = 0, hidden: int = 48, layers: int = 4, intermediate: int = 96) -> Path:
    """A tiny random Llama saved with save_pretrained, with the embedded model's tokenizer.

    Exercises the 'local directory' model source, the same code path as a hub id.
    """
    import torch
    import transformers as tf

    from transformer_dynamics.models import load_tokenizer

    if (path / "config.json").exists():
        return path
    tok = load_tokenizer("embedded")
    torch.manual_seed(seed)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    tf.LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


TINY_CONFIG = Path(__file__).resolve().parent / "workflow" / "tiny.yaml"


def tiny_config(model_dir: Path, **over) -> dict:
    """tests/workflow/tiny.yaml with the tiny model's directory as its source; keyword
    arguments replace top-level keys."""
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["models"]["tiny"]["source"] = str(model_dir)
    for k, v in over.items():
        cfg[k] = v
    return cfg


def write_config(workdir: Path, cfg: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    p = workdir / "config.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900,
              env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                       "--configfile", str(workdir / "config.yaml"), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


def first_line(res: subprocess.CompletedProcess) -> str:
    """The first line the workflow printed, past Snakemake's own notes (the harness passes
    ``--configfile config.yaml``, which Snakemake says "extends" the workdir's config.yaml)."""
    preamble = ("Config file ", "Assuming unrestricted shared filesystem")
    return next((line for line in (res.stderr + res.stdout).splitlines()
                 if line.strip() and not line.startswith(preamble)), "")


def planned_jobs(workdir: Path, *args: str, env: dict | None = None) -> dict[str, int]:
    """Rule -> number of jobs in a dry run (``{}`` when there is nothing to do)."""
    res = snakemake(workdir, "-n", "--cores", "2", *args, env=env)
    out = res.stdout + res.stderr
    if "Nothing to be done" in out:
        return {}
    jobs: dict[str, int] = {}
    table = out.split("Job stats:", 1)[1].splitlines()[3:]
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs
