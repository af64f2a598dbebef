"""Sweeps and quality searches through the embedded service (`pare serve`: SQLite, local storage, an
in-process worker), submitted with the CLI and over HTTP: the job's results hold the curve or the
walk, each target's files list under its own folder (`?target=`), and an unknown target is a 404."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from tests import factories
from tests.service import helpers


def _pare(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    return helpers.pare_cli(args, cwd=cwd, env=env, timeout=600)


def _sts_pairs(path: Path, n: int = 60) -> Path:
    rng = random.Random(0)
    words = factories.SERVICE_WORDS
    rows = ["sentence1\tsentence2\tscore"]
    for _ in range(n):
        a = " ".join(rng.choice(words) for _ in range(6))
        b = " ".join(rng.choice(words) for _ in range(6))
        rows.append(f"{a}\t{b}\t{rng.uniform(0, 5):.2f}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, hf_home: Path):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("targets")
    env = helpers.embedded_env(hf_home)
    port = helpers.free_port()
    log = root / "serve.log"
    proc = helpers.start(
        [*helpers.PARE, "serve", "--port", str(port), "--log-level", "warning"], env=env, cwd=root, log=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        helpers.wait_http(f"{url}/healthz", proc, log)
        key = (root / "var" / "api-key").read_text().strip()
        client_env = env | {"PARE_API_URL": url, "PARE_API_KEY": key}
        (root / "calib.jsonl").write_text(factories.calibration_lines())
        calib = _pare(["datasets", "upload", str(root / "calib.jsonl")], cwd=root, env=client_env).split()[-1]
        sts = _pare(
            ["datasets", "upload", str(_sts_pairs(root / "sts.tsv"))], cwd=root, env=client_env
        ).split()[-1]
        yield {
            "root": root,
            "env": client_env,
            "url": url,
            "key": key,
            "calib": calib,
            "sts": sts,
            "log": log,
        }
    finally:
        helpers.stop(proc)


def _wait(client: httpx.Client, job_id: str) -> dict:  # type: ignore[type-arg]
    helpers.wait_for(
        lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] in ("succeeded", "failed"), timeout=600
    )
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job.get("error")
    return job


def test_a_sweep_from_the_cli(service) -> None:  # type: ignore[no-untyped-def]
    root, env = service["root"], service["env"]
    job_id = _pare(
        [
            "jobs",
            "submit",
            "--model",
            factories.TINY_BERT,
            "--mac-target",
            "0.8,0.6",
            "--calibration",
            service["calib"],
            "--num-samples",
            "16",
            "--max-seq-length",
            "32",
            "--eval",
            f"sts={service['sts']}",
        ],
        cwd=root,
        env=env,
    ).split()[-1]
    with httpx.Client(
        base_url=service["url"], headers={"Authorization": f"Bearer {service['key']}"}
    ) as client:
        job = _wait(client, job_id)
        curve = job["results"]["curve"]
        assert [p["label"] for p in curve] == ["dense", "mac-0.8", "mac-0.6"]
        assert curve[0]["metrics"]["spearman"] == job["results"]["baseline"]["spearman"]
        for point in curve[1:]:
            assert point["target"] - 0.01 <= point["mac_ratio"] <= point["target"]
            assert "spearman" in point["metrics"] and point["artifacts"] == f"{point['label']}/"
        everything = client.get(f"/v1/jobs/{job_id}/artifacts").json()
        one = client.get(f"/v1/jobs/{job_id}/artifacts", params={"target": 0.8}).json()
        assert one and all(a["name"].startswith("mac-0.8/") for a in one)
        assert {a["name"] for a in everything} == {a["name"] for a in one} | {
            a["name"] for a in client.get(f"/v1/jobs/{job_id}/artifacts", params={"target": 0.6}).json()
        }
        missing = client.get(f"/v1/jobs/{job_id}/artifacts", params={"target": 0.7})
        assert missing.status_code == 404 and missing.json()["field"] == "target"
        manifest = client.get(f"/v1/jobs/{job_id}/artifacts/mac-0.6/compression.json").json()
        assert manifest["target"]["mac_ratio"] == 0.6
        assert curve[-1]["runtimes"] == manifest["runtimes"] and manifest["runtimes"][0] == "pare"
    out = _pare(["jobs", "download", job_id, "--out", str(root / "sweep")], cwd=root, env=env)
    assert (root / "sweep" / "mac-0.8" / "config.json").is_file() and "mac-0.6/config.json" in out


def test_a_quality_search_over_http(service) -> None:  # type: ignore[no-untyped-def]
    body = {
        "model": {"id": factories.TINY_BERT},
        "method": {"name": "id"},
        "target": {"max_drop": 0.05, "metric": "spearman"},
        "calibration": {"dataset": service["calib"], "num_samples": 16, "max_seq_length": 32},
        "evaluation": [{"task": "sts", "dataset": service["sts"]}],
    }
    with httpx.Client(
        base_url=service["url"], headers={"Authorization": f"Bearer {service['key']}"}
    ) as client:
        no_task = client.post("/v1/jobs", json=body | {"evaluation": []})
        assert no_task.status_code == 422 and no_task.json()["field"] == "target.metric"
        assert no_task.json()["code"] == "metric_not_evaluated"
        both = client.post("/v1/jobs", json=body | {"target": {"mac_ratio": 0.5, "max_drop": 0.1}})
        assert both.status_code == 422 and both.json()["field"].startswith("target")
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        job = _wait(client, job_id)
        search = job["results"]["search"]
        assert search["metric"] == "spearman" and search["max_drop"] == 0.05 and search["steps"]
        assert search["steps"][0]["mac_ratio"] == 0.95
        if search["reachable"]:
            met = [s["mac_ratio"] for s in search["steps"] if s["met"]]
            assert search["chosen_mac_ratio"] == min(met)
            assert abs(job["results"]["mac_ratio"] - search["chosen_mac_ratio"]) <= 0.01
            names = {a["name"] for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()}
            assert "compression.json" in names  # the chosen model, at the top of the job's files
            assert job["results"]["protocols"]["sts"]["part"] == "report"
        events = [e["type"] for e in client.get(f"/v1/jobs/{job_id}/events").json()["data"]]
        assert events[-1] == "job.succeeded"
    assert json.dumps(search)  # the walk is plain JSON
