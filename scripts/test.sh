#!/usr/bin/env bash
# The test command: install from nothing, place the bundled models in the HF cache, check the code
# (ruff, mypy), run every test (real Postgres and Redis on 127.0.0.1; slow real-model tests
# included). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export PARE_DATA_DIR=${PARE_DATA_DIR:-$(cd .. && pwd)/shared/data}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
pare models import-bundled
set +e
lint=0
if [ "${PARE_LINT:-1}" = 1 ]; then  # PARE_LINT=0 skips ruff and mypy (a quick local rerun)
  echo "ruff check ." && ruff check . || lint=1
  echo "mypy (strict on core/ and workers/compression/)" && mypy || lint=1
fi
# the fault, threat, fuzz and contract tests record their figures here (tests/reliability.py);
# scripts/reliability_report.py turns them into var/reliability.md (docs/reliability.md is one such run)
mkdir -p var && : > var/reliability.jsonl
export PARE_RELIABILITY_LOG=${PARE_RELIABILITY_LOG:-$PWD/var/reliability.jsonl}
python -m pytest -p no:cacheprovider "$@"
status=$?
python scripts/reliability_report.py "$PARE_RELIABILITY_LOG" --out var/reliability.md >/dev/null || true
set -e
[ "$status" -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
[ "$lint" -ne 0 ] && [ "$status" -eq 0 ] && { echo "tests passed, but ruff or mypy failed (above)" >&2; exit 1; }
exit "$status"
