"""Parity: a job submitted through the API and the same settings through `pare compress` produce the
same achieved MAC ratio and the same metrics.

One tiny random Llama is placed in a temporary HF cache under a hub id. `pare serve` runs in embedded
mode (SQLite, in-process worker) as a subprocess; a calibration text and a perplexity text are
uploaded through the API and a job is submitted over HTTP with explicit num_samples, max_seq_length,
seed and evaluation options. Then `python -m cli.main compress --json` runs the same settings on
the same local files, with the same environment (device, threads, HF cache).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import factories
from tests.service import helpers

TINY_LLAMA = "pare-test/tiny-llama"
MAC_RATIO = 0.6
NUM_SAMPLES = 8
MAX_SEQ_LENGTH = 32
SEED = 3
PPL_SEQ_LEN = 32


@pytest.fixture(scope="module")
def llama_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary HF cache holding a tiny random Llama under TINY_LLAMA."""
    from workers.models import place_in_cache

    root = tmp_path_factory.mktemp("parity")
    src = factories.save_tiny_llama(root / "src" / "tiny-llama")
    home = root / "hf"
    place_in_cache(src, TINY_LLAMA, hf_home=home)
    return home


def _env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARE_")}
    return env | {
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "PARE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PARE_HEARTBEAT_SECONDS": "1",
        "PARE_EVENT_INTERVAL_SECONDS": "0.2",
        "PARE_REAPER_INTERVAL_SECONDS": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(helpers.REPO), os.environ.get("PYTHONPATH")])),
    }


def _upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        response = client.post("/v1/datasets", files={"file": (path.name, fh)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _run_api_job(url: str, key: str, calib: Path, evaltext: Path, log: Path) -> dict:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        calib_id, eval_id = _upload(client, calib), _upload(client, evaltext)
        body = {
            "model": {"id": TINY_LLAMA},
            "method": {"name": "id"},
            "target": {"mac_ratio": MAC_RATIO},
            "calibration": {
                "dataset": calib_id,
                "num_samples": NUM_SAMPLES,
                "max_seq_length": MAX_SEQ_LENGTH,
                "seed": SEED,
            },
            "evaluation": [{"task": "perplexity", "dataset": eval_id, "seq_len": PPL_SEQ_LEN}],
        }
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 300
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, f"job still {job['status']}:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
    assert job["status"] == "succeeded", json.dumps(job.get("error")) + "\n" + log.read_text()[-3000:]
    return job


def _run_cli(env: dict[str, str], calib: Path, evaltext: Path, out: Path, cwd: Path) -> dict:  # type: ignore[type-arg]
    cmd = [
        sys.executable, "-m", "cli.main", "compress",
        "--model", TINY_LLAMA,
        "--method", "id",
        "--mac-target", str(MAC_RATIO),
        "--calibration", str(calib),
        "--num-samples", str(NUM_SAMPLES),
        "--seq-len", str(MAX_SEQ_LENGTH),
        "--seed", str(SEED),
        "--eval", f"perplexity:{evaltext}",
        "--eval-opt", f"perplexity.seq_len={PPL_SEQ_LEN}",
        "--device", "cpu",
        "--out", str(out),
        "--json",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_api_job_and_cli_give_the_same_numbers(tmp_path: Path, llama_home: Path) -> None:
    env = _env(llama_home)
    calib, evaltext = tmp_path / "calib.txt", tmp_path / "eval.txt"
    factories.write_lines(calib, factories.word_lines(60, offset=0))  # the tiny BPE's corpus words
    factories.write_lines(evaltext, factories.word_lines(30, offset=11))

    serve_dir = tmp_path / "serve"
    serve_dir.mkdir()
    port = helpers.free_port()
    log = tmp_path / "serve.log"
    proc = helpers.start(
        [*helpers.PARE, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=serve_dir,
        log=log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        helpers.wait_http(f"{url}/healthz", proc, log)
        key = (serve_dir / "var" / "api-key").read_text().strip()
        job = _run_api_job(url, key, calib, evaltext, log)
    finally:
        helpers.stop(proc)

    cli = _run_cli(env, calib, evaltext, tmp_path / "cli-out", tmp_path)
    api = job["results"]

    # the same calibration samples were drawn (a cheap, precise diagnosis when metrics differ)
    assert job["resolved"]["calibration_fingerprint"] == cli["resolved"]["calibration_fingerprint"]
    assert job["resolved"]["calibration_tokens"] == cli["resolved"]["calibration_tokens"]

    assert api["mac_ratio"] == pytest.approx(cli["mac_ratio"], rel=0, abs=1e-12)
    assert api["mac_ratio_model"] == pytest.approx(cli["mac_ratio_model"], rel=0, abs=1e-12)
    assert (api["params_before"], api["params_after"]) == (cli["params_before"], cli["params_after"])
    assert api["mac_ratio"] < 1.0  # the target was applied, not a no-op

    for phase in ("baseline", "compressed"):
        names = set(cli["metrics"][phase])
        assert {"perplexity", "token_accuracy"} <= names
        assert set(api[phase]) == names, (phase, api[phase], cli["metrics"][phase])
        for name in names:
            a, c = api[phase][name], cli["metrics"][phase][name]
            assert math.isfinite(a) and a == pytest.approx(c, rel=1e-6), (phase, name, a, c)

    # the evaluation protocol was the same (windows and scored tokens, not just the numbers)
    for field in ("seq_len", "stride", "num_tokens", "num_windows", "num_scored_tokens", "text_sha256"):
        assert api["protocols"]["perplexity"][field] == cli["protocols"]["perplexity"][field], field
