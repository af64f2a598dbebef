"""End to end over HTTP with a real Celery worker (`pare worker` subprocess) and a tiny random BERT:
upload calibration data, submit, follow the event stream, download the artifacts, verify sha256."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db.engine import session_scope
from app.db.models import Artifact, EvaluationResult
from tests.service import helpers
from tests.service.conftest import job_body

TERMINAL = {"succeeded", "failed", "cancelled"}


def follow(client: httpx.Client, job_id: str, timeout: float = 180) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """Read the text/event-stream until the server ends it; returns (event, data) pairs."""
    events: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    name, data = "message", ""
    with client.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}, timeout=timeout
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                if name == "end":
                    return events
                events.append((name, json.loads(data)))
                name, data = "message", ""
    return events


def download_all(client: httpx.Client, job_id: str, dest: Path) -> list[dict]:  # type: ignore[type-arg]
    artifacts = client.get(f"/v1/jobs/{job_id}/artifacts").json()
    for artifact in artifacts:
        body = client.get(artifact["download_url"])
        assert body.status_code == 200
        assert (
            hashlib.sha256(body.content).hexdigest() == artifact["sha256"] == body.headers["etag"].strip('"')
        )
        assert len(body.content) == artifact["size_bytes"]
        (dest / artifact["name"]).parent.mkdir(parents=True, exist_ok=True)
        (dest / artifact["name"]).write_bytes(body.content)
    return artifacts


def test_tiny_bert_end_to_end(
    worker: None,
    client_a: httpx.Client,
    dataset_id: str,
    settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    response = client_a.post(
        "/v1/jobs", json=job_body(dataset_id), headers={"Idempotency-Key": os.urandom(8).hex()}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    events = follow(client_a, job_id)
    types = [name for name, _ in events]
    job = client_a.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", (job["error"], types)
    assert (
        types[0] == "job.queued"
        and "job.running" in types
        and types[-1].startswith(("job.succeeded", "webhook"))
    )
    assert "progress" in types
    assert [d["seq"] for _, d in events] == sorted(d["seq"] for _, d in events)
    assert job["attempt"] == 1 and job["progress"]["percent"] == 100.0
    results = job["results"]
    assert 0 < results["mac_ratio"] <= 0.5 + 0.05 and "baseline" in results and "compressed" in results
    assert results["params_after"] < results["params_before"]
    assert job["resolved"]["model"]["revision"] and job["resolved"]["datasets"][dataset_id]
    artifacts = download_all(client_a, job_id, tmp_path)
    names = {a["name"] for a in artifacts}
    assert "config.json" in names and any(n.endswith(".safetensors") for n in names)
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
        assert {r.name for r in rows} == names
        assert all(r.storage_key.startswith(f"jobs/{job_id}/") for r in rows)


def test_cancel_running_job_end_to_end(worker: None, client_a: httpx.Client, dataset_id: str) -> None:
    """A running job asked to cancel goes `cancelling`, then `cancelled` at its next boundary."""
    latency = {"task": "latency", "seq_len": 32, "batch_size": 2, "min_seconds": 3.0}
    body = job_body(dataset_id, evaluation=[latency])  # seconds of latency measurement: time to cancel
    job_id = client_a.post("/v1/jobs", json=body).json()["id"]
    helpers.wait_for(lambda: client_a.get(f"/v1/jobs/{job_id}").json()["status"] != "queued", timeout=120)
    cancel = client_a.post(f"/v1/jobs/{job_id}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelling", cancel.text
    final = helpers.wait_for(
        lambda: (s := client_a.get(f"/v1/jobs/{job_id}").json()["status"]) in TERMINAL and s, timeout=120
    )
    assert final == "cancelled"
    types = [e["type"] for e in client_a.get(f"/v1/jobs/{job_id}/events").json()["data"]]
    assert types.index("job.cancelling") < types.index("job.cancelled")
    assert client_a.get(f"/v1/jobs/{job_id}/artifacts").json() == []


@pytest.mark.slow
def test_minilm_sts_end_to_end(
    worker: None,
    client_a: httpx.Client,
    data_dir: Path,
    hf_home: Path,
    settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The real all-MiniLM-L6-v2 at half the MACs, calibrated on SST-2 sentences, evaluated on STS-B dev."""
    from workers.models import import_bundled

    import_bundled(hf_home)
    calib = tmp_path / "calib.txt"
    lines = (data_dir / "sst2" / "alps_train_split.tsv").read_text().splitlines()[1:513]
    calib.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n")
    cal_id = client_a.post("/v1/datasets", files={"file": ("calib.txt", calib.read_bytes())}).json()["id"]
    dev = (data_dir / "stsb" / "dev.tsv").read_text().splitlines()[:401]  # header + 400 pairs
    sts = client_a.post("/v1/datasets", files={"file": ("dev.tsv", ("\n".join(dev) + "\n").encode())})
    assert sts.status_code == 201, sts.text
    body = {
        "model": {"id": "sentence-transformers/all-MiniLM-L6-v2"},
        "method": {"name": "id"},
        "target": {"mac_ratio": 0.5},
        "calibration": {"dataset": cal_id, "num_samples": 64, "max_seq_length": 128},
        "evaluation": [{"task": "sts", "dataset": sts.json()["id"], "max_length": 128}],
    }
    response = client_a.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    follow(client_a, job_id, timeout=600)
    job = client_a.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    results = job["results"]
    assert results["baseline"] and results["compressed"] and results["mac_ratio"] <= 0.55
    spearman = [v for k, v in results["baseline"].items() if "spearman" in k]
    assert spearman and spearman[0] > 0.75  # the real model on STS-B dev (about 0.87 on all of it)
    download_all(client_a, job_id, tmp_path / "out")
    with session_scope(settings.database_url) as session:
        phases = {
            r.phase
            for r in session.scalars(select(EvaluationResult).where(EvaluationResult.job_id == job_id))
        }
    assert phases == {"baseline", "compressed"}


def test_worker_killed_mid_job_is_rerun_once(
    env: dict[str, str],
    settings,
    client_a: httpx.Client,  # type: ignore[no-untyped-def]
    dataset_id: str,
    root: Path,
) -> None:
    """kill -9 the worker while it runs a job; the reaper re-queues it; a second worker finishes it
    (attempt 2, one set of artifacts whose sha256 matches storage)."""
    import signal

    from app.queue import CeleryDispatcher
    from app.services.reaper import reap_once
    from app.storage import make_storage
    from tests.service.test_jobs import _insert_queued
    from tests.service.test_leases import _expire, _job

    own = settings.model_copy(update={"queue": f"{settings.queue}-kill"})
    own_env = env | {"PARE_QUEUE": own.queue}
    command = [*helpers.PARE, "worker", "--pool", "solo", "--loglevel", "INFO"]
    first_log = root / "kill-worker-1.log"
    first = helpers.start(command, env=own_env, cwd=root, log=first_log)
    try:
        helpers.wait_for(lambda: b"ready" in first_log.read_bytes(), timeout=60)
        job_id = _insert_queued(settings, client_a, dataset_id)
        CeleryDispatcher(own).publish(job_id)
        helpers.wait_for(lambda: _job(settings, job_id).status != "queued", timeout=60, interval=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        helpers.stop(first)
    assert _job(settings, job_id).status == "running", "the job finished before the kill; nothing to test"
    _expire(settings, job_id)
    assert job_id in reap_once(settings=own, dispatcher=CeleryDispatcher(own)).requeued
    second_log = root / "kill-worker-2.log"
    second = helpers.start(command, env=own_env, cwd=root, log=second_log)
    try:
        job = helpers.wait_for(
            lambda: (j := _job(settings, job_id)).status in TERMINAL and j, timeout=180, interval=0.5
        )
    finally:
        helpers.stop(second)
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert job.attempt == 2
    storage = make_storage(settings)
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
    assert rows and len({r.name for r in rows}) == len(rows)
    assert {r.storage_key.split("/")[2] for r in rows} == {str(job.fence)}
    for row in rows:
        with storage.open_verified(row.storage_key, row.sha256):
            pass


def test_frozen_worker_is_fenced_out(
    env: dict[str, str],
    settings,  # type: ignore[no-untyped-def]
    client_a: httpx.Client,
    dataset_id: str,
    root: Path,
) -> None:
    """SIGSTOP a worker mid-job past its lease; the reaper re-queues, a second worker wins; when the
    frozen one resumes, its writes change nothing and it leaves no objects behind."""
    import signal

    from app.queue import CeleryDispatcher
    from app.services.reaper import reap_once
    from tests.service.test_jobs import _insert_queued
    from tests.service.test_leases import _expire, _job

    own = settings.model_copy(update={"queue": f"{settings.queue}-freeze"})
    own_env = env | {"PARE_QUEUE": own.queue}
    command = [*helpers.PARE, "worker", "--pool", "solo", "--loglevel", "INFO"]
    frozen_log, winner_log = root / "frozen-worker.log", root / "winner-worker.log"
    frozen = helpers.start(command, env=own_env, cwd=root, log=frozen_log)
    try:
        helpers.wait_for(lambda: b"ready" in frozen_log.read_bytes(), timeout=60)
        latency = {"task": "latency", "seq_len": 32, "batch_size": 2, "min_seconds": 2.0}
        job_id = _insert_queued(settings, client_a, dataset_id, evaluation=[latency])
        CeleryDispatcher(own).publish(job_id)
        helpers.wait_for(lambda: (_job(settings, job_id).progress or {}).get("stage") != "queued", timeout=60)
        os.killpg(frozen.pid, signal.SIGSTOP)
        stale_fence = _job(settings, job_id).fence
        _expire(settings, job_id)
        assert job_id in reap_once(settings=own, dispatcher=CeleryDispatcher(own)).requeued
        winner = helpers.start(command, env=own_env, cwd=root, log=winner_log)
        try:
            job = helpers.wait_for(
                lambda: (j := _job(settings, job_id)).status in TERMINAL and j, timeout=180, interval=0.5
            )
        finally:
            helpers.stop(winner)
        assert job.status == "succeeded" and job.attempt == 2, (job.error_code, job.error_message)
        os.killpg(frozen.pid, signal.SIGCONT)
        helpers.wait_for(lambda: b"lease lost" in frozen_log.read_bytes(), timeout=30)
        helpers.wait_for(lambda: b"succeeded" in frozen_log.read_bytes(), timeout=60)  # its task returned
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
        helpers.stop(frozen)
    after = _job(settings, job_id)
    assert (after.status, after.fence, after.results) == ("succeeded", job.fence, job.results)
    objects = [p for p in (Path(settings.storage_url) / "jobs" / job_id).rglob("*") if p.is_file()]
    assert objects and {p.relative_to(Path(settings.storage_url)).parts[2] for p in objects} == {
        str(job.fence)
    }
    assert str(stale_fence) != str(job.fence)
