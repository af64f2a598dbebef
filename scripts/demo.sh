#!/usr/bin/env bash
# The main job end to end on the embedded default, from nothing: install, place the bundled models in
# the HF cache, start `pare serve` (SQLite, in-process worker, local storage) in a fresh directory,
# submit a job compressing all-MiniLM-L6-v2 to half its MACs with ID (calibration data uploaded
# through the API), follow it, download and verify the artifact, print the results.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate
DATA=${PARE_DATA_DIR:-$(cd .. && pwd)/shared/data}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PORT=${PARE_DEMO_PORT:-8765}
URL=http://127.0.0.1:$PORT
pare models import-bundled

WORK=${PARE_DEMO_DIR:-$REPO/var/demo-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$WORK" && cd "$WORK"
pare serve --port "$PORT" >serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS "$URL/healthz" >/dev/null || { cat serve.log; exit 1; }
echo "service up at $URL (state in $WORK/var)"

JOB=$(pare jobs submit --api-url "$URL" --model sentence-transformers/all-MiniLM-L6-v2 --method id \
  --mac-ratio 0.5 --calibration "$DATA/stsb/train.tsv" --text-column sentence1 --num-samples 256 \
  --max-seq-length 128 --eval "sts=$DATA/stsb/dev.tsv" --eval latency | tail -n 1)
echo "submitted job $JOB"
pare jobs follow --api-url "$URL" "$JOB"
pare jobs download --api-url "$URL" "$JOB" --out "$WORK/model"
python - "$WORK/model" <<'PY'
import sys
from workers.compression.artifacts import load_compressed
model, tokenizer = load_compressed(sys.argv[1])
print(f"artifact reloads: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")
PY
pare jobs show --api-url "$URL" "$JOB"
