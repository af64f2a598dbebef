#!/usr/bin/env bash
# The checks that need a CUDA device, as one run on a lent GPU machine (whose python3 has torch,
# transformers, scipy, matplotlib, pytest): the GPU tests (`-m gpu`), then the scale suite on the GPU
# (Llama shapes to 7B, id and activation-aware svd, with CUDA prefill latency dense vs compressed).
# Pure-Python dependencies missing there travel as wheels in .whl/ (see README, "GPU checks").
#     OUT=DIR scripts/gpu_check.sh [bench.run options, e.g. --scale-sizes 0.5B,1B --scale-methods id]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, scipy; print('torch', torch.__version__, 'transformers', transformers.__version__, 'scipy', scipy.__version__, 'cpus', __import__('os').cpu_count())" | tee -a "$OUT/gpu.txt"
python3 -m pytest -m gpu tests/engine/test_gpu.py -q -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log"
python3 -m bench.run --only scale --device cuda --results-dir "$OUT/bench" --job-timeout "${JOB_TIMEOUT:-200}" "$@" 2>&1 | tee "$OUT/scale.log"
