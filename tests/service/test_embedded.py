"""Embedded mode: `pare serve` on a fresh directory is the whole service (SQLite, local storage, an
in-process worker); `pare keys create` in the same directory writes to the same database; the
client commands drive it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests import factories
from tests.service import helpers

_pare = helpers.pare_cli


def test_embedded_serve_keys_and_client(tmp_path: Path, hf_home: Path) -> None:
    env = helpers.embedded_env(hf_home)
    port = helpers.free_port()
    log = tmp_path / "serve.log"
    proc = helpers.start(
        [*helpers.PARE, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        helpers.wait_http(f"{url}/healthz", proc, log)
        assert (tmp_path / "var" / "pare.db").exists()
        local_key = (tmp_path / "var" / "api-key").read_text().strip()
        assert local_key in log.read_text()
        assert httpx.get(f"{url}/v1/jobs").status_code == 401
        assert httpx.get(f"{url}/readyz").status_code == 200

        new_key = (
            _pare(["keys", "create", "--tenant", "alice"], cwd=tmp_path, env=env).strip().splitlines()[-1]
        )
        alice = {"Authorization": f"Bearer {new_key}"}
        assert httpx.get(f"{url}/v1/jobs", headers=alice).json()["data"] == []

        client_env = env | {"PARE_API_URL": url, "PARE_API_KEY": new_key}
        calib = tmp_path / "calib.jsonl"
        calib.write_text(factories.calibration_lines())
        dataset = (
            _pare(["datasets", "upload", str(calib)], cwd=tmp_path, env=client_env).strip().splitlines()[-1]
        )
        assert dataset.startswith("ds_")
        submitted = _pare(
            [
                "jobs",
                "submit",
                "--model",
                factories.TINY_BERT,
                "--mac-ratio",
                "0.5",
                "--calibration",
                dataset,
                "--num-samples",
                "16",
                "--max-seq-length",
                "32",
            ],
            cwd=tmp_path,
            env=client_env,
        )
        job_id = submitted.strip().splitlines()[-1]
        assert job_id.startswith("job_")
        followed = subprocess.run(
            [*helpers.PARE, "jobs", "follow", job_id],
            cwd=tmp_path,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert followed.stdout.strip().endswith(f"{job_id} succeeded"), (
            followed.stdout + followed.stderr + log.read_text()[-3000:]
        )
        listed = _pare(["jobs", "list"], cwd=tmp_path, env=client_env)
        assert job_id in listed and "succeeded" in listed
        out = _pare(
            ["jobs", "download", job_id, "--out", str(tmp_path / "art")], cwd=tmp_path, env=client_env
        )
        assert "config.json" in out and (tmp_path / "art" / "config.json").exists()
        assert list((tmp_path / "var" / "artifacts" / "jobs" / job_id).rglob("*.safetensors"))
        # the local key belongs to another tenant: it cannot see alice's job
        assert (
            httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {local_key}"}).status_code
            == 404
        )
    finally:
        helpers.stop(proc)
