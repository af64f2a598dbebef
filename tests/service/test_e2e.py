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
from app.db.models import Artifact, EvaluationResult, JobEvent
from tests.factories import insert_queued, job_body
from tests.reliability import record
from tests.service import helpers
from tests.service.helpers import expire_lease, job_row

TERMINAL = {"succeeded", "failed", "cancelled"}
# Seconds of latency measurement after the compression (at least min_seconds per model, both timed;
# a forward of the tiny BERT at 8 x 64 tokens takes about 2 ms, so the 1000-iteration cap does not cut
# it short): a run seen in the `compressing` stage stays in it that long, so a kill, a freeze or a
# cancel sent then lands mid-job.
MID_JOB_LATENCY = {"task": "latency", "seq_len": 64, "batch_size": 8, "min_seconds": 1.0}


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
    # what loads the artifact, in the results as in its compression.json: heads pruned in BERT
    manifest = json.loads((tmp_path / "compression.json").read_text())
    assert results["runtimes"] == manifest["runtimes"] == ["pare"]
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
        assert {r.name for r in rows} == names
        assert all(r.storage_key.startswith(f"jobs/{job_id}/") for r in rows)


def test_cancel_running_job_end_to_end(
    worker: None, client_a: httpx.Client, dataset_id: str, settings  # type: ignore[no-untyped-def]
) -> None:
    """A running job asked to cancel goes `cancelling`, then `cancelled` at its next boundary."""
    body = job_body(dataset_id, evaluation=[MID_JOB_LATENCY])  # seconds of latency: time to cancel
    job_id = client_a.post("/v1/jobs", json=body).json()["id"]
    _wait_mid_job(settings, job_id)
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


def _events(settings, job_id: str) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def, type-arg]
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)).all()
        return [(r.type, r.data) for r in rows]


def _wait_mid_job(settings, job_id: str, proc=None) -> object:  # type: ignore[no-untyped-def]
    """Wait until the job's first run is in the compressing stage; returns that row. Fails (instead
    of testing nothing) if the run is anywhere else by then: the worker died, or the job finished."""

    def seen():  # type: ignore[no-untyped-def]
        assert proc is None or proc.poll() is None, "the worker exited before the job got to compressing"
        job = job_row(settings, job_id)
        assert job.status in ("queued", "running"), (job.status, job.error_code, job.error_message)
        return job if (job.progress or {}).get("stage") == "compressing" else None

    job = helpers.wait_for(seen, timeout=120, interval=0.05)
    assert job.status == "running" and job.attempt == 1, (job.status, job.attempt)
    return job


def _one_artifact_set(settings, job_id: str, fence: int) -> list[Artifact]:  # type: ignore[no-untyped-def]
    """The job's artifact rows: one set, all under `fence`, each object in storage with its sha256,
    and nothing else stored for the job (the killed or fenced-out run left no objects)."""
    from app.storage import make_storage

    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()
    names = [r.name for r in rows]
    assert rows and len(set(names)) == len(names) and "config.json" in names, names
    assert {r.storage_key for r in rows} == {f"jobs/{job_id}/{fence}/{r.name}" for r in rows}
    storage = make_storage(settings)
    for row in rows:
        with storage.open_verified(row.storage_key, row.sha256):
            pass
    base = Path(settings.storage_url)
    stored = {str(p.relative_to(base)) for p in (base / "jobs" / job_id).rglob("*") if p.is_file()}
    assert stored == {r.storage_key for r in rows}
    return rows


def test_worker_killed_mid_job_is_rerun_once(
    env: dict[str, str],
    settings,
    client_a: httpx.Client,  # type: ignore[no-untyped-def]
    dataset_id: str,
    root: Path,
) -> None:
    """kill -9 the worker while its run is compressing; the reaper re-queues the job; a second
    worker runs it to success: attempt 2, succeeded exactly once, one set of artifacts (the new
    fence's) whose sha256 matches storage."""
    import signal

    from app.queue import CeleryDispatcher
    from app.services.reaper import reap_once

    own = settings.model_copy(update={"queue": f"{settings.queue}-kill"})
    own_env = env | {"PARE_QUEUE": own.queue}
    command = [*helpers.PARE, "worker", "--pool", "solo", "--loglevel", "INFO"]
    first_log = root / "kill-worker-1.log"
    first = helpers.start(command, env=own_env, cwd=root, log=first_log)
    try:
        helpers.wait_for(lambda: b"ready" in first_log.read_bytes(), timeout=60)
        job_id = insert_queued(settings, client_a, dataset_id, evaluation=[MID_JOB_LATENCY])
        CeleryDispatcher(own).publish(job_id)
        seen = _wait_mid_job(settings, job_id, first)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        helpers.stop(first)
    killed = job_row(settings, job_id)  # the kill landed mid-run: nothing after `compressing` was written
    assert (killed.status, killed.attempt, killed.fence, killed.progress["stage"]) == (
        "running", 1, seen.fence, "compressing"
    )
    assert killed.results is None and not (Path(settings.storage_url) / "jobs" / job_id).exists()
    expire_lease(settings, job_id)
    assert job_id in reap_once(settings=own, dispatcher=CeleryDispatcher(own)).requeued
    assert (job_row(settings, job_id).status, job_row(settings, job_id).attempt) == ("queued", 1)
    second_log = root / "kill-worker-2.log"
    second = helpers.start(command, env=own_env, cwd=root, log=second_log)
    try:
        job = helpers.wait_for(
            lambda: (j := job_row(settings, job_id)).status in TERMINAL and j, timeout=180, interval=0.5
        )
    finally:
        helpers.stop(second)
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert job.attempt == 2 and job.fence != seen.fence and job.results["mac_ratio"] <= 0.5
    types = [t for t, _ in _events(settings, job_id)]
    assert [d["attempt"] for t, d in _events(settings, job_id) if t == "job.running"] == [1, 2]
    assert types.count("job.requeued") == 1 and types.count("job.succeeded") == 1
    assert types.index("job.requeued") < types.index("job.succeeded")
    _one_artifact_set(settings, job_id, job.fence)
    assert not (Path(settings.work_dir) / job_id).exists()  # no scratch of the killed attempt stays
    record("worker killed (`kill -9`) mid-job",
           test="tests/service/test_e2e.py::test_worker_killed_mid_job_is_rerun_once",
           faults_injected=1, jobs_run=1, jobs_succeeded=1, attempts=job.attempt, jobs_lost=0,
           duplicated_artifacts=0)


def test_frozen_worker_is_fenced_out(
    env: dict[str, str],
    settings,  # type: ignore[no-untyped-def]
    client_a: httpx.Client,
    dataset_id: str,
    root: Path,
) -> None:
    """SIGSTOP a worker while its run is compressing, past its lease; the reaper re-queues, a second
    worker wins; when the frozen one resumes, its writes change nothing and it leaves no objects."""
    import signal

    from app.queue import CeleryDispatcher
    from app.services.reaper import reap_once

    own = settings.model_copy(update={"queue": f"{settings.queue}-freeze"})
    own_env = env | {"PARE_QUEUE": own.queue}
    command = [*helpers.PARE, "worker", "--pool", "solo", "--loglevel", "INFO"]
    frozen_log, winner_log = root / "frozen-worker.log", root / "winner-worker.log"
    frozen = helpers.start(command, env=own_env, cwd=root, log=frozen_log)
    try:
        helpers.wait_for(lambda: b"ready" in frozen_log.read_bytes(), timeout=60)
        job_id = insert_queued(settings, client_a, dataset_id, evaluation=[MID_JOB_LATENCY])
        CeleryDispatcher(own).publish(job_id)
        stale = _wait_mid_job(settings, job_id, frozen)
        os.killpg(frozen.pid, signal.SIGSTOP)
        assert job_row(settings, job_id).status == "running"  # frozen mid-run, not after it
        expire_lease(settings, job_id)
        assert job_id in reap_once(settings=own, dispatcher=CeleryDispatcher(own)).requeued
        winner = helpers.start(command, env=own_env, cwd=root, log=winner_log)
        try:
            job = helpers.wait_for(
                lambda: (j := job_row(settings, job_id)).status in TERMINAL and j, timeout=180, interval=0.5
            )
        finally:
            helpers.stop(winner)
        assert job.status == "succeeded" and job.attempt == 2, (job.error_code, job.error_message)
        events_before = _events(settings, job_id)
        os.killpg(frozen.pid, signal.SIGCONT)
        helpers.wait_for(lambda: b"lease lost" in frozen_log.read_bytes(), timeout=30)
        helpers.wait_for(lambda: b"succeeded" in frozen_log.read_bytes(), timeout=60)  # its task returned
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
        helpers.stop(frozen)
    after = job_row(settings, job_id)
    assert (after.status, after.fence, after.attempt) == ("succeeded", job.fence, 2)
    assert after.results == job.results
    assert stale.fence != job.fence
    assert _events(settings, job_id) == events_before  # the stale run appended nothing
    assert [t for t, _ in events_before].count("job.succeeded") == 1
    record("worker frozen past its lease (`SIGSTOP`)",
           test="tests/service/test_e2e.py::test_frozen_worker_is_fenced_out",
           faults_injected=1, jobs_run=1, jobs_succeeded=1, stale_writes_counted=0, jobs_lost=0)
    _one_artifact_set(settings, job_id, job.fence)
