"""Redis `shutdown nosave` while one job runs and others wait in its queue, then a restart on the
same port with nothing in it: the reaper re-publishes every queued job from Postgres, every job
succeeds exactly once, with one artifact set whose stored bytes match the database's sha256."""

from __future__ import annotations

import time

import httpx

from tests.factories import job_body
from tests.faults import checks
from tests.faults.conftest import Workers
from tests.faults.servers import RedisServer
from tests.reliability import record
from tests.service import helpers

# Seconds of latency measurement after the compression, so the first job is still running when
# the broker goes away (a forward of the tiny BERT at 8 x 64 tokens takes about 2 ms).
MID_JOB_LATENCY = {"task": "latency", "seq_len": 64, "batch_size": 8, "min_seconds": 2.0}
QUEUED = 3
SKIPPED = b"nothing to claim"  # a worker's log line for a delivery of a job it could not claim


def _submit(client: httpx.Client, body: dict) -> str:  # type: ignore[type-arg]
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _run_id(redis_server: RedisServer) -> str:
    info = redis_server.cli("info", "server").stdout
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("run_id:"))


def test_broker_restart_loses_its_queue(
    redis_server: RedisServer,
    workers: Workers,
    client: httpx.Client,
    dataset_id: str,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    began = time.monotonic()
    workers.start()
    running = _submit(client, job_body(dataset_id, evaluation=[MID_JOB_LATENCY]))
    helpers.wait_for(lambda: checks.jobs(settings, [running])[running].status == "running", timeout=120)
    queued = [_submit(client, job_body(dataset_id)) for _ in range(QUEUED)]
    assert int(redis_server.cli("llen", settings.queue).stdout) >= QUEUED  # waiting behind the first
    before = _run_id(redis_server)
    states = {j.id: j.status for j in checks.jobs(settings, [running, *queued]).values()}
    assert states[running] == "running" and all(states[j] == "queued" for j in queued), states

    lost_at = time.time()
    redis_server.shutdown_nosave()
    # With the broker down the API still takes jobs: queued in Postgres, published later.
    posted = time.monotonic()
    while_down = _submit(client, job_body(dataset_id))
    post_seconds = time.monotonic() - posted
    assert client.get("/readyz").status_code == 503
    assert checks.jobs(settings, [running])[running].status == "running"  # the run goes on
    redis_server.start()
    assert _run_id(redis_server) != before  # a new server: whatever the old one held is gone

    ids = [running, *queued, while_down]
    rows = checks.wait_terminal(settings, ids, timeout=240)
    succeeded = [j for j in ids if rows[j].status == "succeeded"]
    runs = {j: checks.transitions(settings, j).count("job.running") for j in ids}
    published = {j: rows[j].published_at for j in [*queued, while_down]}
    republished = sum(1 for at in published.values() if at is not None and at.timestamp() >= lost_at)
    sets = {j: checks.artifact_set(settings, rows[j]) for j in succeeded}
    duplicated = sum(1 for s in sets.values() if len(s.fences) > 1 or len(set(s.names)) != len(s.names))
    record(
        "broker restarts and loses its queue",
        test="tests/faults/test_broker_restart.py::test_broker_restart_loses_its_queue",
        faults_injected=1,
        jobs_run=len(ids),
        jobs_running_at_fault=1,
        jobs_queued_at_fault=len(queued),
        jobs_submitted_while_down=1,
        post_seconds_while_down=round(post_seconds, 2),
        jobs_republished=republished,
        jobs_succeeded=len(succeeded),
        jobs_lost=len(ids) - len(succeeded),
        runs_total=sum(runs.values()),
        duplicate_deliveries_skipped=workers.count_in_logs(SKIPPED),
        duplicated_artifacts=duplicated,
        seconds=round(time.monotonic() - began, 1),
    )
    assert len(succeeded) == len(ids), {j: (rows[j].status, rows[j].error_code) for j in ids}
    assert republished == len(queued) + 1  # each job the broker lost was published again after the loss
    for job_id in ids:
        assert rows[job_id].attempt == 1 and runs[job_id] == 1, (job_id, rows[job_id].attempt, runs[job_id])
        assert checks.transitions(settings, job_id) == ["job.queued", "job.running", "job.succeeded"]
        checks.assert_one_artifact_set(settings, rows[job_id])
    assert duplicated == 0
    assert not [k for k in checks.unrecorded_objects(settings) if k.split("/")[1] in ids]
