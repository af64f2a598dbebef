"""`python -m bench.run --quick` end to end, in a subprocess, into a temporary results dir (CI runs this)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE_FILES = (
    "quality_minilm.json",
    "speed_minilm.json",
    "latency_minilm.json",
    "scale_llama.json",
    "picogpt_shakespeare.json",
    "factorizations_minilm.json",
    "picogpt_mpo.json",
)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    results = tmp_path / "results"
    full = {p: p.stat().st_mtime_ns for p in (REPO / "bench" / "results").glob("*.json")}
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results-dir", str(results)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in SUITE_FILES:
        record = json.loads((results / name).read_text())
        assert record["quick"] is True
        for key in ("command", "git_commit", "device", "versions", "seeds", "data", "protocol", "timestamp"):
            assert key in record, (name, key)
    quality = json.loads((results / "quality_minilm.json").read_text())
    assert all("metrics" in p for p in quality["points"]), quality["points"]
    assert all(abs(p["mac_ratio"] - p["target"]) <= 0.01 for p in quality["points"])
    factor = json.loads((results / "factorizations_minilm.json").read_text())
    assert {p["method"] for p in factor["points"]} == {"block_lowrank", "monarch", "mpo"}
    for point in factor["points"]:
        assert point["reload_exact"], point
        assert point["target"] - 0.01 <= point["mac_ratio"] <= point["target"], point
    assert "## Factorization families" in (results / "RESULTS.md").read_text()
    scale = json.loads((results / "scale_llama.json").read_text())
    assert all("error" not in job for job in scale["jobs"]), scale["jobs"]
    markdown = (results / "RESULTS.md").read_text()
    assert "## Bars" in markdown and "**Quick run**" in markdown
    assert (results / "plots" / "quality_minilm.png").is_file()
    assert (results / "plots" / "scale.png").is_file()
    assert str(results / "RESULTS.md") in proc.stdout
    # the full results (and bench/RESULTS.md) are never touched by a quick run
    assert {p: p.stat().st_mtime_ns for p in (REPO / "bench" / "results").glob("*.json")} == full
