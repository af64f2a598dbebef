"""A worker SIGKILLed in the middle of uploading its run's artifacts (after the first object is
stored, before the commit that records them). The job is re-queued and succeeds with one artifact
set, and the objects the killed run stored, which no row names, are deleted
(app/services/retention.py `sweep_job_objects`: by the reaper when it re-queues the job, by the
next run when it claims it). Random kills (tests/faults/test_worker_storm.py) land in this window
too rarely to show it reliably.
"""

from __future__ import annotations

import signal
import sys

import httpx

from tests.factories import job_body
from tests.faults import checks
from tests.faults.conftest import Workers
from tests.reliability import record
from tests.service import helpers

KILLED_MID_UPLOAD = [
    sys.executable, "-c", "import tests.faults.kill_mid_upload; from cli.main import main; main()",
    "worker", "--pool", "solo", "--loglevel", "INFO",
]  # fmt: skip


def test_kill_mid_upload_leaves_no_unrecorded_objects(
    workers: Workers,
    client: httpx.Client,
    dataset_id: str,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    from workers.tasks import execute_job

    victim = workers.start(command=KILLED_MID_UPLOAD, PARE_LEASE_SECONDS="5")
    response = client.post("/v1/jobs", json=job_body(dataset_id))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert victim.wait(timeout=240) == -signal.SIGKILL, workers.log_text()
    killed = checks.jobs(settings, [job_id])[job_id]
    assert (killed.status, killed.fence) == ("running", 1)
    left = [k for k in checks.unrecorded_objects(settings) if k.split("/")[1] == job_id]
    assert len(left) == 1 and left[0].startswith(f"jobs/{job_id}/1/"), left  # the one object stored

    # The API's reaper re-queues the job once the dead run's lease expires; the next run succeeds.
    helpers.wait_for(lambda: checks.jobs(settings, [job_id])[job_id].status == "queued", timeout=60)
    assert execute_job(job_id=job_id, settings=settings) == "succeeded"
    job = checks.jobs(settings, [job_id])[job_id]
    assert job.attempt == 2 and job.fence == 3, (job.attempt, job.fence)
    assert checks.transitions(settings, job_id) == [
        "job.queued", "job.running", "job.requeued", "job.running", "job.succeeded"
    ]  # fmt: skip
    checks.assert_one_artifact_set(settings, job)
    leftovers = [k for k in checks.unrecorded_objects(settings) if k.split("/")[1] == job_id]
    assert not leftovers, f"objects no artifact row names: {leftovers}"
    record("orphan objects of killed runs",
           test="tests/faults/test_killed_upload.py::test_kill_mid_upload_leaves_no_unrecorded_objects",
           faults_injected=int(victim.returncode == -signal.SIGKILL), orphans_after_kill=len(left),
           left_after_rerun=len(leftovers), attempts=job.attempt)
