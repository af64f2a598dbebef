"""The API's per-process caches: single-flight loads, bounded staleness of GET /v1/jobs/{id},
eviction on cancel, ETag / If-None-Match, and tenant isolation through the cache.

Staleness is asserted on a fake clock stepped by the test (TtlCache's `clock`), never by sleeping:
an entry put at t is served up to t + ttl and reloaded after it, exactly."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from app.api.cache import TtlCache
from tests.factories import insert_queued
from tests.service.helpers import FakeClock


def test_fetch_is_single_flight_and_cached() -> None:
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return f"value {calls}"

    async def scenario() -> None:
        clock = FakeClock()
        cache: TtlCache[str, str] = TtlCache(ttl=0.3, clock=clock)
        values = await asyncio.gather(*(cache.fetch("k", load) for _ in range(50)))
        assert values == ["value 1"] * 50 and calls == 1  # one load for 50 concurrent misses
        clock.advance(0.3)  # exactly ttl after the put: still fresh
        assert await cache.fetch("k", load) == "value 1" and calls == 1  # a hit
        clock.advance(0.001)  # just past ttl: expired, loaded again
        assert await cache.fetch("k", load) == "value 2" and calls == 2
        cache.evict("k")
        assert await cache.fetch("k", load) == "value 3" and calls == 3  # evicted: loaded at once

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


def test_get_and_put_expire_on_the_injected_clock() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(ttl=5, clock=clock)
    cache.put("a", 1)
    clock.advance(3)
    cache.put("b", 2)
    clock.advance(2)  # a is exactly ttl old, b 2 s
    assert (cache.get("a"), cache.get("b")) == (1, 2)
    clock.advance(0.5)
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.put("a", 3)  # a put restarts the entry's ttl
    clock.advance(5)
    assert (cache.get("a"), cache.get("b")) == (3, None)


def test_ttl_zero_stores_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl=0, clock=FakeClock())
    cache.put("k", 1)
    assert cache.get("k") is None and cache._entries == {}


def test_production_clock_is_monotonic() -> None:
    import time

    assert TtlCache(ttl=1).clock is time.monotonic


def test_bounded_size() -> None:
    clock = FakeClock()
    cache: TtlCache[int, int] = TtlCache(ttl=60, max_entries=100, clock=clock)
    for i in range(250):
        cache.put(i, i)
    assert len(cache._entries) <= 100 and cache.get(249) == 249
    # when full, the expired entries go first and the live ones stay
    cache = TtlCache(ttl=10, max_entries=4, clock=clock)
    cache.put(0, 0)
    clock.advance(6)
    cache.put(1, 1)
    cache.put(2, 2)
    cache.put(3, 3)
    clock.advance(5)  # 0 has expired, 1..3 have not
    cache.put(4, 4)
    assert sorted(cache._entries) == [1, 2, 3, 4]
    cache.put(5, 5)  # full of live entries: everything goes, then 5 is kept
    assert sorted(cache._entries) == [5]


def _set_status(settings, job_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
    from app.db.engine import session_scope
    from app.db.models import Job

    with session_scope(settings.database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=status))


def test_job_reads_are_at_most_ttl_old(settings, client_a, client_b, dataset_id) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.queue import NullDispatcher

    job_id = insert_queued(settings, client_a, dataset_id)
    app = create_app(
        settings.model_copy(update={"job_cache_seconds": 0.5}), dispatcher=NullDispatcher(), reaper=False
    )
    clock = FakeClock()
    with TestClient(app) as client:
        assert app.state.job_cache.ttl == 0.5  # PARE_JOB_CACHE_SECONDS reaches the app's cache
        app.state.job_cache.clock = clock  # which now reads a clock the test steps
        a = {"Authorization": client_a.headers["authorization"]}
        b = {"Authorization": client_b.headers["authorization"]}
        first = client.get(f"/v1/jobs/{job_id}", headers=a)
        assert first.status_code == 200 and first.json()["status"] == "queued"
        etag = first.headers["etag"]
        assert client.get(f"/v1/jobs/{job_id}", headers={**a, "If-None-Match": etag}).status_code == 304
        assert client.get(f"/v1/jobs/{job_id}", headers=b).status_code == 404  # cached, still not B's

        _set_status(settings, job_id, "running")  # a worker's write, not through this process
        assert client.get(f"/v1/jobs/{job_id}", headers=a).json()["status"] == "queued"  # within ttl
        clock.advance(0.5)
        assert client.get(f"/v1/jobs/{job_id}", headers=a).json()["status"] == "queued"  # ttl old: served
        clock.advance(0.01)
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
