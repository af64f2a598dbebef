"""Claims, leases, fences and the reaper against the real Postgres and Redis."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import httpx
import redis
from sqlalchemy import update

from app.db.engine import session_scope
from app.db.jobstate import append_event, claim_job, finish_job, heartbeat, record_progress
from app.db.models import Job, utcnow
from app.queue import CeleryDispatcher
from app.services.reaper import reap_once
from tests.factories import insert_queued, make_key, upload_dataset
from tests.reliability import record
from tests.service.helpers import REDIS_URL, TcpProxy, expire_lease, free_port, job_row


def _client(api_url: str, settings) -> httpx.Client:  # type: ignore[no-untyped-def]
    key = make_key(settings, f"lease-{secrets.token_hex(3)}")
    return httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _idle(settings):  # type: ignore[no-untyped-def]
    """Settings whose queue no worker consumes (the session worker must not take these jobs)."""
    return settings.model_copy(update={"queue": f"{settings.queue}-idle"})


def test_duplicate_delivery_claims_once(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    from workers.tasks import execute_job

    with _client(api_url, settings) as client:
        ds = upload_dataset(client)
        job_id = insert_queued(settings, client, ds)
    results: list[object] = []

    def claim() -> None:
        with session_scope(settings.database_url) as session:
            results.append(claim_job(session, job_id=job_id, owner="t", lease_seconds=30))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert execute_job(job_id=job_id, settings=settings) == "skipped"  # a redelivered message does nothing
    job = job_row(settings, job_id)
    assert job.status == "running" and job.attempt == 1
    record("job longer than the visibility timeout",
           test="tests/service/test_leases.py::test_duplicate_delivery_claims_once",
           concurrent_claims=len(results), claims_won=sum(r is not None for r in results),
           claims_finding_nothing=sum(r is None for r in results), runs=job.attempt)


def test_reaper_requeues_then_fails_worker_lost(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    dispatcher = CeleryDispatcher(_idle(settings))
    with _client(api_url, settings) as client:
        ds = upload_dataset(client)
        job_id = insert_queued(settings, client, ds)
        for attempt in range(1, settings.max_attempts + 1):
            with session_scope(settings.database_url) as session:
                claim = claim_job(session, job_id=job_id, owner=f"w{attempt}", lease_seconds=30)
            assert claim is not None and claim.attempt == attempt
            expire_lease(settings, job_id)
            report = reap_once(settings=settings, dispatcher=dispatcher)
            if attempt < settings.max_attempts:
                assert job_id in report.requeued
                assert job_row(settings, job_id).status == "queued"
                # the stale run's writes change nothing
                with session_scope(settings.database_url) as session:
                    assert not heartbeat(session, claim=claim, lease_seconds=30)
                    assert not record_progress(session, claim=claim, progress={"percent": 99}, event=None)
                    assert append_event(session, job_id=job_id, type="x", fence=claim.fence) is None
                    assert not finish_job(session, claim=claim, status="succeeded", results={"x": 1})
            else:
                assert job_id in report.failed
        job = job_row(settings, job_id)
        assert (
            job.status == "failed"
            and job.error_code == "worker_lost"
            and job.attempt == settings.max_attempts
        )
        assert job.results is None
        body = client.get(f"/v1/jobs/{job_id}").json()
        assert body["error"]["code"] == "worker_lost"
        types = [e["type"] for e in client.get(f"/v1/jobs/{job_id}/events").json()["data"]]
        assert types.count("job.requeued") == settings.max_attempts - 1 and types[-1] == "job.failed"
    record("job kills its worker every time (poison)",
           test="tests/service/test_leases.py::test_reaper_requeues_then_fails_worker_lost",
           attempts=job.attempt, max_attempts=settings.max_attempts, final_code=job.error_code)


def test_reaper_republishes_jobs_the_broker_lost(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    r = redis.Redis.from_url(REDIS_URL)
    queue_key = f"{settings.broker_key_prefix}{_idle(settings).queue}"
    with _client(api_url, settings) as client:
        ds = upload_dataset(client)
        job_id = insert_queued(settings, client, ds)  # never published: as if Redis lost it
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(published_at=utcnow() - timedelta(hours=1))
        )
    before = r.llen(queue_key)
    report = reap_once(settings=settings, dispatcher=CeleryDispatcher(_idle(settings)))
    assert job_id in report.republish
    messages = r.lrange(queue_key, 0, -1)
    assert r.llen(queue_key) == before + len(report.republish)
    assert any(job_id.encode() in m for m in messages)  # the task's argsrepr header names the job
    assert job_id not in reap_once(settings=settings, dispatcher=CeleryDispatcher(_idle(settings))).republish


def test_expired_cancelling_job_becomes_cancelled(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    with _client(api_url, settings) as client:
        ds = upload_dataset(client)
        job_id = insert_queued(settings, client, ds)
        with session_scope(settings.database_url) as session:
            assert claim_job(session, job_id=job_id, owner="w", lease_seconds=30)
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelling"
        expire_lease(settings, job_id)
        assert job_id in reap_once(settings=settings, dispatcher=CeleryDispatcher(_idle(settings))).cancelled
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_terminal_write_survives_a_database_outage(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    """The database is unreachable when the run finishes; the write is retried until it is back."""
    from workers.tasks import _finish

    with _client(api_url, settings) as client:
        ds = upload_dataset(client)
        job_id = insert_queued(settings, client, ds)
    with session_scope(settings.database_url) as session:
        claim = claim_job(session, job_id=job_id, owner="w", lease_seconds=30)
    port = free_port()
    proxy = TcpProxy(port, ("127.0.0.1", 5432))
    proxied = settings.model_copy(
        update={"database_url": settings.database_url.replace(":5432/", f":{port}/")}
    )
    threading.Timer(1.5, proxy.start).start()  # the outage ends after 1.5 s
    try:
        assert _finish(proxied, claim, "cancelled")
    finally:
        proxy.stop()
    assert job_row(settings, job_id).status == "cancelled"
