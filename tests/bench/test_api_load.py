"""bench.api_load end to end at a small concurrency: both topologies come up (real Postgres, Redis,
a Celery worker), run a job, answer every GET, and the result JSON says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_api_load_small(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.api_load", "--modes", "embedded,production", "--concurrency", "20"]
    cmd += ["--rounds", "1", "--no-wrk", "--results-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "api_load.json").read_text())
    assert set(result["modes"]) == {"embedded", "production"}
    for mode, r in result["modes"].items():
        assert r["job"]["status"] == "succeeded", (mode, r["job"])
        assert r["sequential"]["errors"] == 0
        burst = r["burst"]["all"]
        assert burst["requests"] == 20 and burst["errors"] == 0, (mode, burst)
        assert burst["statuses"] == {"200": 20} and burst["p99_ms"] > 0
        assert r["burst"]["server_alive_after"] and r["wrk_paced"] == {"skipped": "--no-wrk"}
    assert "--workers 2" in result["modes"]["production"]["server"]["command"]
