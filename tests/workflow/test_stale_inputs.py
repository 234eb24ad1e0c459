"""The stale-input matrix (issue 26): every input kind changed after a finished run, with
and without its file present. Each change either re-runs the jobs it affects or stops the
run with the mismatch named on the first line; never "Nothing to be done" with a changed
input, and never a job that computes from an input made for other settings."""

from __future__ import annotations

import shutil

import pytest
import yaml

from test_reruns import edited_config, local_inputs_base, write_local_corpus  # noqa: F401 (fixture)
from workflow_utils import first_line, planned_jobs, snakemake

pytestmark = [pytest.mark.workflow]

STORE = "results/tiny/activations/original.zarr"
FROM_FILTER = {"filter_corpus", "tokenize", "extract_shard", "gather_activations"}
FROM_TOKENIZE = {"tokenize", "extract_shard", "gather_activations"}
FROM_EXTRACT = {"extract_shard", "gather_activations"}


def _new_corpus(wd):
    write_local_corpus(wd / "other.txt", edit=3)
    return "other.txt"


def _model_copy(wd):
    shutil.copytree(wd / "model", wd / "model-copy")
    return "model-copy"


# (case, edit of the workdir, edit of the config, the jobs that must re-run)
PRESENT = [
    ("corpus path", _new_corpus, lambda c, v: c["corpus"].update(source=v), FROM_FILTER),
    ("corpus content", lambda wd: write_local_corpus(wd / "corpus.txt", edit=7), None, FROM_FILTER),
    ("model path", _model_copy, lambda c, v: c["models"]["tiny"].update(source=v), FROM_TOKENIZE),
    ("n_samples", None, lambda c, v: c.update(n_samples=12), FROM_FILTER),
    ("seed", None, lambda c, v: c.update(seed=3), FROM_FILTER),
    ("corpus bounds", None, lambda c, v: c["corpus"].update(max_chars=450), FROM_FILTER),
    ("dtype", None, lambda c, v: c["models"]["tiny"].update(dtype="bfloat16"), FROM_EXTRACT),
]


@pytest.fixture
def run(local_inputs_base, tmp_path):
    wd = tmp_path / "wd"
    shutil.copytree(local_inputs_base, wd, symlinks=True)
    assert planned_jobs(wd, STORE) == {}
    return wd


@pytest.mark.parametrize("case, edit_files, edit_config, must_rerun", PRESENT, ids=[c[0] for c in PRESENT])
def test_a_changed_input_reruns_what_it_affects(run, case, edit_files, edit_config, must_rerun):
    value = edit_files(run) if edit_files else None
    with edited_config(run, (lambda c: edit_config(c, value)) if edit_config else (lambda c: None)):
        jobs = planned_jobs(run, STORE)
    assert must_rerun <= set(jobs), f"{case}: planned {jobs}, must re-run {sorted(must_rerun)}"


def test_positions_turned_on_adds_the_position_store_and_keeps_the_last_token_store(run):
    with edited_config(run, lambda c: c["extraction"].update(positions="sample:2")):
        jobs = planned_jobs(run, "results/tiny/positions/original.zarr")
        again = planned_jobs(run, STORE)
    assert jobs.get("extract_shard") == 1 and jobs.get("gather_activations") == 1 and "tokenize" not in jobs
    assert again == {}


ABSENT = [
    ("corpus path", lambda c: c["corpus"].update(source="no-such-corpus.txt"), "corpus.source"),
    ("model path", lambda c: c["models"]["tiny"].update(source="no-such-model"), "models.tiny.source"),
]


@pytest.mark.parametrize("case, edit_config, key", ABSENT, ids=[c[0] for c in ABSENT])
def test_a_missing_input_stops_naming_the_key_on_line_one(run, case, edit_config, key):
    with edited_config(run, edit_config):
        res = snakemake(run, "-n", "--cores", "1", STORE, check=False)
    assert res.returncode != 0, f"{case}: a dry run with a missing input planned: {res.stdout[-2000:]}"
    first = first_line(res)
    assert key in first, f"{case}: first line {first!r} does not name {key}"


@pytest.mark.parametrize("deleted", ["results/corpus", "results/tiny/tokens"])
def test_a_changed_setting_with_its_intermediate_deleted_still_reruns(run, deleted):
    """Snakemake's params trigger does not fire for a job whose input is missing: the
    deleted intermediate is rebuilt, and everything after it re-runs from the new settings."""
    shutil.rmtree(run / deleted)
    with edited_config(run, lambda c: c.update(n_samples=12)):
        jobs = planned_jobs(run, STORE)
    assert FROM_FILTER <= set(jobs) if deleted == "results/corpus" else FROM_TOKENIZE <= set(jobs), jobs


def test_a_store_made_for_other_settings_is_refused_by_its_readers(run):
    """Whatever Snakemake decides (here: --rerun-triggers mtime, which ignores params), a job
    never computes from an input made for other settings: the analysis stops, naming the
    mismatch and the fix."""
    with edited_config(run, lambda c: c.update(seed=5)):
        res = snakemake(run, "--cores", "1", "--rerun-triggers", "mtime", "--forcerun", "vector_stats",
                        "results/tiny/stats/original/transitions.parquet", check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "was made for seed=0" in out and "seed=5" in out, out[-3000:]
    assert not (run / "results/tiny/stats/original/transitions.parquet").exists()
