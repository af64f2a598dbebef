"""A storm: 20 tiny jobs while workers are killed with SIGKILL at random moments for a minute, each
killed worker replaced by a fresh one. At the end every job is terminal (succeeded: the attempts
allowed are many more than one job is likely to lose), each has exactly one artifact set (its
final fence's) whose stored bytes hash to the sha256 in the database, and storage holds nothing
for runs that did not commit.

Each worker lives a random number of seconds, then is killed whatever it is doing (starting,
importing for its first run, loading, calibrating, compressing, saving, uploading, or idle) and
replaced at once.
The seed is printed and recorded; PARE_FAULTS_SEED replays a storm's random choices (not the
timing of the runs).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import httpx
from sqlalchemy import select

from app.db.engine import session_scope
from app.db.models import ACTIVE, Job
from tests.factories import job_body
from tests.faults import checks
from tests.faults.conftest import Workers
from tests.reliability import record

JOBS = 20
WORKERS = 2
STORM_SECONDS = 60.0
# When each worker dies (drawn when it starts): with probability EARLY a random time after its start,
# so while it starts or imports for its first run; otherwise a random time after its first run
# began computing (its first progress report), so during some later run, at whatever stage.
EARLY, AFTER_START, AFTER_WARM = 0.3, (1.0, 15.0), (0.5, 6.0)
# each job also times its model for a second or two, so a storm of tiny jobs is still running when
# the workers die (without it the 20 jobs can all finish between two polls of the kill loop)
BUSY = {"task": "latency", "seq_len": 32, "batch_size": 4, "min_seconds": 1.0}
LEASE_SECONDS = "10"  # a killed run's job is re-queued by the API's reaper within ~11 s


def _stage_of(settings, pid: int) -> str:  # type: ignore[no-untyped-def]
    """What the worker with this pid is doing: `idle` (holds no job), `claimed` (its run has not
    reported yet: importing, fetching data) or the stage its run last reported (lease_owner is
    host:pid:thread)."""
    with session_scope(settings.database_url) as session:
        for job in session.scalars(select(Job).where(Job.status.in_(ACTIVE))):
            if job.lease_owner and int(job.lease_owner.split(":")[1]) == pid:
                fresh = job.started_at is not None and job.updated_at > job.started_at
                return str((job.progress or {}).get("stage")) if fresh else "claimed"
    return "idle"


def test_worker_storm(
    workers: Workers,
    client: httpx.Client,
    dataset_id: str,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    seed = int(os.environ.get("PARE_FAULTS_SEED", time.time_ns() % 2**32))
    print(f"storm seed {seed} (PARE_FAULTS_SEED={seed} replays its choices)")
    rng = random.Random(seed)
    began = time.monotonic()
    dies_at: dict[int, float] = {}  # pid -> when to kill it
    warm_life: dict[int, float] = {}  # pid -> seconds it lives once it computes (late deaths)

    def spawn() -> None:
        proc = workers.start(wait=False, PARE_LEASE_SECONDS=LEASE_SECONDS)
        if rng.random() < EARLY:
            dies_at[proc.pid] = time.monotonic() + rng.uniform(*AFTER_START)
        else:
            dies_at[proc.pid], warm_life[proc.pid] = float("inf"), rng.uniform(*AFTER_WARM)

    for _ in range(WORKERS):
        spawn()
    ids = []
    for _ in range(JOBS):
        response = client.post("/v1/jobs", json=job_body(dataset_id, evaluation=[BUSY]))
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    stages: Counter[str] = Counter()  # kills by what the victim was doing
    busy: set[int] = set()  # workers seen holding a job
    storm_ends = time.monotonic() + STORM_SECONDS
    while time.monotonic() < storm_ends:
        time.sleep(0.25)
        if all(j.status not in ("queued", *ACTIVE) for j in checks.jobs(settings, ids).values()):
            break  # nothing left to interrupt
        for proc in workers.alive():
            stage = _stage_of(settings, proc.pid)
            if stage != "idle":
                busy.add(proc.pid)
            elif proc.pid not in busy:
                stage = "starting"  # has not claimed a job yet
            if proc.pid in warm_life and stage not in ("idle", "starting", "claimed"):
                dies_at[proc.pid] = time.monotonic() + warm_life.pop(proc.pid)
            if time.monotonic() >= dies_at[proc.pid]:
                workers.kill(proc)
                stages[stage] += 1
                spawn()
        assert len(workers.alive()) == WORKERS, workers.log_text()
    storm = time.monotonic() - began

    kills, mid_job = sum(stages.values()), sum(v for k, v in stages.items() if k not in ("idle", "starting"))
    rows = checks.wait_terminal(settings, ids, timeout=300)
    succeeded = [j for j in ids if rows[j].status == "succeeded"]
    sets = {j: checks.artifact_set(settings, rows[j]) for j in succeeded}
    duplicated = sum(1 for s in sets.values() if len(s.fences) != 1 or len(set(s.names)) != len(s.names))
    mismatched = sum(len(s.mismatched) for s in sets.values())
    unrecorded = [k for k in checks.unrecorded_objects(settings) if k.split("/")[1] in ids]
    attempts = [rows[j].attempt for j in ids]
    record(
        "worker killed (`kill -9`) mid-job",
        test="tests/faults/test_worker_storm.py::test_worker_storm",
        faults_injected=kills,
        kills_mid_job=mid_job,
        kills_by_stage=",".join(f"{k}:{v}" for k, v in sorted(stages.items())),
        workers_started=len(workers.procs),
        jobs_run=len(ids),
        jobs_succeeded=len(succeeded),
        jobs_lost=len(ids) - len(succeeded),
        jobs_rerun=sum(1 for a in attempts if a > 1),
        runs_total=sum(attempts),
        duplicate_deliveries_skipped=workers.count_in_logs(b"nothing to claim"),
        max_attempt=max(attempts),
        duplicated_artifacts=duplicated,
        sha256_mismatches=mismatched,
        unrecorded_objects=len(unrecorded),
        storm_seconds=round(storm, 1),
        seconds=round(time.monotonic() - began, 1),
        seed=seed,
    )
    assert kills >= 2 and mid_job >= 1, stages  # fewer only if the jobs all ended first
    assert len(succeeded) == len(ids), {j: (rows[j].status, rows[j].error_code) for j in ids}
    for job_id in ids:
        job, transitions = rows[job_id], checks.transitions(settings, job_id)
        assert transitions.count("job.running") == job.attempt, (job_id, transitions)
        assert transitions.count("job.requeued") == job.attempt - 1, (job_id, transitions)
        assert transitions[0] == "job.queued" and transitions[-1] == "job.succeeded", transitions
        assert transitions.count("job.succeeded") == 1, transitions
        checks.assert_one_artifact_set(settings, job)
    assert duplicated == 0 and mismatched == 0
    assert not unrecorded, unrecorded
