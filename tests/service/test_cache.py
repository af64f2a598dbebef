"""The API's per-process caches: single-flight loads, bounded staleness of GET /v1/jobs/{id},
eviction on cancel, ETag / If-None-Match, and tenant isolation through the cache."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import update

from app.api.cache import TtlCache
from tests.service.test_jobs import _insert_queued


def test_fetch_is_single_flight_and_cached() -> None:
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return f"value {calls}"

    async def scenario() -> None:
        cache: TtlCache[str, str] = TtlCache(ttl=0.3)
        values = await asyncio.gather(*(cache.fetch("k", load) for _ in range(50)))
        assert values == ["value 1"] * 50 and calls == 1  # one load for 50 concurrent misses
        assert await cache.fetch("k", load) == "value 1" and calls == 1  # then a hit
        await asyncio.sleep(0.35)
        assert await cache.fetch("k", load) == "value 2" and calls == 2  # expired: loaded again
        cache.evict("k")
        assert await cache.fetch("k", load) == "value 3"

    asyncio.run(scenario())


def test_fetch_shares_a_failure_and_caches_nothing() -> None:
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise LookupError("no such job")

    async def scenario() -> None:
        cache: TtlCache[str, str] = TtlCache(ttl=10)
        results = await asyncio.gather(
            *(cache.fetch("k", failing) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, LookupError) for r in results) and calls == 1
        with pytest.raises(LookupError):
            await cache.fetch("k", failing)
        assert calls == 2  # a failure is not cached

    asyncio.run(scenario())


def test_ttl_zero_is_off() -> None:
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    async def scenario() -> None:
        cache: TtlCache[str, int] = TtlCache(ttl=0)
        assert [await cache.fetch("k", load) for _ in range(3)] == [1, 2, 3]

    asyncio.run(scenario())


def test_bounded_size() -> None:
    cache: TtlCache[int, int] = TtlCache(ttl=60, max_entries=100)
    for i in range(250):
        cache.put(i, i)
    assert len(cache._entries) <= 100 and cache.get(249) == 249


def _set_status(settings, job_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
    from app.db.engine import session_scope
    from app.db.models import Job

    with session_scope(settings.database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=status))


def test_job_reads_are_at_most_ttl_old(settings, client_a, client_b, dataset_id) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.queue import NullDispatcher

    job_id = _insert_queued(settings, client_a, dataset_id)
    app = create_app(
        settings.model_copy(update={"job_cache_seconds": 0.5}), dispatcher=NullDispatcher(), reaper=False
    )
    with TestClient(app) as client:
        a = {"Authorization": client_a.headers["authorization"]}
        b = {"Authorization": client_b.headers["authorization"]}
        first = client.get(f"/v1/jobs/{job_id}", headers=a)
        assert first.status_code == 200 and first.json()["status"] == "queued"
        etag = first.headers["etag"]
        assert client.get(f"/v1/jobs/{job_id}", headers={**a, "If-None-Match": etag}).status_code == 304
        assert client.get(f"/v1/jobs/{job_id}", headers=b).status_code == 404  # cached, still not B's

        _set_status(settings, job_id, "running")  # a worker's write, not through this process
        assert client.get(f"/v1/jobs/{job_id}", headers=a).json()["status"] == "queued"  # within ttl
        time.sleep(0.6)
        fresh = client.get(f"/v1/jobs/{job_id}", headers=a)
        assert fresh.json()["status"] == "running" and fresh.headers["etag"] != etag
        assert client.get(f"/v1/jobs/{job_id}", headers={**a, "If-None-Match": etag}).status_code == 200

        # a cancel through the API evicts at once
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=a).json()["status"] == "cancelling"
        assert client.get(f"/v1/jobs/{job_id}", headers=a).json()["status"] == "cancelling"

    app = create_app(
        settings.model_copy(update={"job_cache_seconds": 0}), dispatcher=NullDispatcher(), reaper=False
    )
    with TestClient(app) as client:
        a = {"Authorization": client_a.headers["authorization"]}
        assert client.get(f"/v1/jobs/{job_id}", headers=a).json()["status"] == "cancelling"
        _set_status(settings, job_id, "cancelled")
        assert client.get(f"/v1/jobs/{job_id}", headers=a).json()["status"] == "cancelled"  # no cache
