"""Every Snakemake command of the README, as written, plans outputs only in its own run's
results directory: a command typed without `--configfile configs/quick.yaml` cannot rebuild
or overwrite the quick run (`results/quick/`), and the quick run writes nothing outside it.

Each command runs as a dry run (`-n`) in a copy of the repository's tracked files, from its
root as the README says; `.venv/bin/snakemake` becomes this interpreter's Snakemake.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_utils import REPO

pytestmark = [pytest.mark.workflow]

QUICK = "results/quick/"


def readme_commands() -> list[str]:
    """The `.venv/bin/snakemake ...` commands of the README's bash blocks (continuation lines
    joined, comments and `bash tools/setup.sh &&` dropped)."""
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(".venv/bin/snakemake"):
                    cmds.append(" ".join(part.split()))
    return cmds


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_checks():
    assert any("configs/quick.yaml" in c for c in COMMANDS) and any(c == ".venv/bin/snakemake --cores all" for c in COMMANDS)


def planned_outputs(cmd: str, wd: Path) -> list[str]:
    argv = shlex.split(cmd)
    if "--report" in argv or "--lint" in argv:
        argv = [a for a in argv if a != "--lint"]
        i = argv.index("--report") if "--report" in argv else None
        if i is not None:  # the report file itself is the output
            return [argv[i + 1]]
        return []
    argv = [sys.executable, "-m", "snakemake", *argv[1:], "-n", "--forceall"]
    if "--workflow-profile" in argv:  # plan as the cluster would, without submitting
        argv += ["--executor", "local"]
    res = subprocess.run(argv, cwd=wd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd}: {res.stderr[-3000:]}"
    outs = re.findall(r"^\s+(?:output|log|benchmark): (.+)$", res.stdout + res.stderr, flags=re.M)
    assert outs, f"{cmd}: no job planned:\n{res.stdout[-2000:]}"
    return [p.strip() for o in outs for p in o.split(",")]


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("readme")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (wd / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, wd / f)
    return wd


ONLINE = pytest.mark.skip(reason="configs/paper.yaml needs the hub; tests/workflow/test_paper_config.py runs it with local stand-ins")


@pytest.mark.parametrize("cmd", [pytest.param(c, marks=ONLINE) if "configs/paper.yaml" in c else c
                                 for c in COMMANDS if "--lint" not in c])
def test_a_readme_command_writes_only_in_its_own_results_dir(cmd, repo_copy):
    outs = planned_outputs(cmd, repo_copy)
    if "configs/quick.yaml" in cmd:
        outside = [o for o in outs if not o.startswith(QUICK)]
        assert not outside, f"{cmd} writes outside {QUICK}: {outside[:5]}"
    else:
        inside = [o for o in outs if o.startswith(QUICK)]
        assert not inside, f"{cmd} would rebuild the quick run: {inside[:5]}"
