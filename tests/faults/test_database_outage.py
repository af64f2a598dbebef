"""`pg_ctl stop -m fast` while a job runs, kept down until the run's terminal write has failed at
least once: the API answers 503 problem+json (code database_unavailable) on every route that needs
the database, never 500; after the restart the job ends `succeeded` once, no transition lost."""

from __future__ import annotations

import time

import httpx

from tests.factories import job_body
from tests.faults import checks
from tests.faults.conftest import Workers
from tests.faults.servers import PostgresCluster
from tests.reliability import record
from tests.service import helpers
from tests.service.helpers import PROBLEM

# Seconds of latency measurement after the compression: the run is still going when Postgres stops.
MID_JOB_LATENCY = {"task": "latency", "seq_len": 64, "batch_size": 8, "min_seconds": 2.0}
RETRY_LOGGED = b"database unreachable; retrying the write"


def _probe(client: httpx.Client, job_id: str, dataset_id: str, key: str) -> list[tuple[str, httpx.Response]]:
    """One request to each route that needs the database."""
    calls = [
        ("GET /v1/jobs/{id}", lambda: client.get(f"/v1/jobs/{job_id}")),
        ("GET /v1/jobs", lambda: client.get("/v1/jobs")),
        ("GET /v1/jobs/{id}/events", lambda: client.get(f"/v1/jobs/{job_id}/events")),
        ("GET /v1/jobs/{id}/artifacts", lambda: client.get(f"/v1/jobs/{job_id}/artifacts")),
        ("POST /v1/jobs", lambda: client.post("/v1/jobs", json=job_body(dataset_id))),
        (
            "POST /v1/jobs (Idempotency-Key)",
            lambda: client.post("/v1/jobs", json=job_body(dataset_id), headers={"Idempotency-Key": key}),
        ),
        ("POST /v1/jobs/{id}/cancel", lambda: client.post(f"/v1/jobs/{job_id}/cancel")),
    ]
    return [(name, call()) for name, call in calls]


def _is_unavailable(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and response.headers.get("content-type", "").startswith(PROBLEM)
        and response.json().get("code") == "database_unavailable"
    )


def test_database_stopped_mid_job(
    postgres: PostgresCluster,
    workers: Workers,
    client: httpx.Client,
    dataset_id: str,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    began = time.monotonic()
    # A lease far above the outage: the reaper must have no reason to touch this run.
    worker = workers.start(PARE_LEASE_SECONDS="300")
    log = workers.logs[worker.pid]
    response = client.post("/v1/jobs", json=job_body(dataset_id, evaluation=[MID_JOB_LATENCY]))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def mid_job() -> bool:
        job = checks.jobs(settings, [job_id])[job_id]
        assert job.status in ("queued", "running"), (job.status, job.error_code, job.error_message)
        return (job.progress or {}).get("stage") in ("compressing", "evaluating")

    helpers.wait_for(mid_job, timeout=180, interval=0.1)
    before = checks.events(settings, job_id)

    postgres.stop("fast")
    down = time.monotonic()
    seen: list[tuple[str, int, str | None]] = []
    key = f"outage-{job_id}"
    unavailable: set[str] = set()
    try:
        # Down until the run has finished computing and its terminal write failed (and is retried).
        while RETRY_LOGGED not in log.read_bytes() or len(unavailable) < 7:
            assert time.monotonic() - down < 120, (seen[-12:], log.read_text()[-3000:])
            assert worker.poll() is None, log.read_text()[-3000:]
            for name, answer in _probe(client, job_id, dataset_id, key):
                code = answer.json().get("code") if answer.status_code >= 400 else None
                seen.append((name, answer.status_code, code))
                if _is_unavailable(answer):
                    unavailable.add(name)
            time.sleep(0.2)
        readyz = client.get("/readyz")
        assert readyz.status_code == 503 and readyz.json()["code"] == "not_ready", readyz.text
        assert client.get("/healthz").status_code == 200
    finally:
        outage = time.monotonic() - down
        postgres.start()

    job = checks.wait_terminal(settings, [job_id], timeout=120)[job_id]
    transitions = checks.transitions(settings, job_id)
    served_500 = sum(1 for _, status, _ in seen if status >= 500 and status != 503)
    record(
        "database unavailable",
        test="tests/faults/test_database_outage.py::test_database_stopped_mid_job",
        faults_injected=1,
        jobs_run=1,
        jobs_succeeded=int(job.status == "succeeded"),
        jobs_lost=int(job.status != "succeeded"),
        attempts=job.attempt,
        requests_during_outage=len(seen),
        answered_503=sum(1 for _, status, _ in seen if status == 503),
        answered_500=served_500,
        terminal_write_retried=RETRY_LOGGED in log.read_bytes(),
        outage_seconds=round(outage, 1),
        duplicated_artifacts=max(0, len(checks.artifact_set(settings, job).fences) - 1),
        seconds=round(time.monotonic() - began, 1),
    )
    assert served_500 == 0, [s for s in seen if s[1] >= 500 and s[1] != 503]
    # every answer was a 503 problem, but for bodies still in the API's one-second caches
    assert all(status == 503 or (status == 200 and name.startswith("GET")) for name, status, _ in seen), seen
    assert all(code in (None, "database_unavailable") for _, _, code in seen), seen
    assert job.status == "succeeded" and job.attempt == 1, (job.status, job.error_code, job.error_message)
    assert transitions == ["job.queued", "job.running", "job.succeeded"], transitions
    assert checks.events(settings, job_id)[: len(before)] == before  # nothing written before was lost
    checks.assert_one_artifact_set(settings, job)
    assert not [k for k in checks.unrecorded_objects(settings) if k.split("/")[1] == job_id]
    # nothing submitted or cancelled during the outage took effect
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    listed = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert [j["id"] for j in listed] == [job_id], [j["id"] for j in listed]
    # an Idempotency-Key refused with a 503 during the outage is free afterwards: one job for it
    workers.kill(worker)  # idle; the job below stays queued
    retried = client.post("/v1/jobs", json=job_body(dataset_id), headers={"Idempotency-Key": key})
    assert retried.status_code == 202, retried.text
    again = client.post("/v1/jobs", json=job_body(dataset_id), headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json()["id"] == retried.json()["id"], again.text
    assert client.post(f"/v1/jobs/{retried.json()['id']}/cancel").json()["status"] == "cancelled"
