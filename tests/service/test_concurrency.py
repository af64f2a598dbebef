"""Bursts of concurrent requests, the API-key cache, and several API processes behind one port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.factories import job_body, make_key
from tests.service import helpers


async def _burst(url: str, key: str, path: str, n: int) -> list[int | str]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=20) as client:

        async def one() -> int | str:
            try:
                return (await client.get(path)).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_burst_of_gets_all_answer(api_url: str, client_a: httpx.Client, key_a: str, dataset_id: str) -> None:
    """200 GETs in flight at once, more than the pool's connections and the thread pool's threads,
    all answer 200 quickly. (A request session held across FastAPI's thread-pool hops deadlocked
    here: every request waited until the 30 s pool timeout and most came back 503.)"""
    job = client_a.post("/v1/jobs", json=job_body(dataset_id)).json()
    start = time.monotonic()
    statuses = asyncio.run(_burst(api_url, key_a, f"/v1/jobs/{job['id']}", 200))
    elapsed = time.monotonic() - start
    assert statuses == [200] * 200, {s: statuses.count(s) for s in set(statuses)}
    assert elapsed < 15, f"200 GETs took {elapsed:.1f} s"
    client_a.post(f"/v1/jobs/{job['id']}/cancel")


def test_revoked_key_stops_working_within_the_cache_ttl(settings) -> None:  # type: ignore[no-untyped-def]
    """A revoked key answers 401 at once without the key cache, and within its TTL with it."""
    from fastapi.testclient import TestClient

    from app.db.engine import session_scope
    from app.main import create_app
    from app.queue import NullDispatcher
    from app.services import keys

    for ttl in (0.0, 1.0):
        key = make_key(settings, "tenant-revoked")
        app = create_app(
            settings.model_copy(update={"key_cache_seconds": ttl}), dispatcher=NullDispatcher(), reaper=False
        )
        clock = helpers.FakeClock()
        with TestClient(app) as client:
            assert app.state.key_cache.ttl == ttl  # PARE_KEY_CACHE_SECONDS reaches the key cache
            app.state.key_cache.clock = clock  # time moves only when the test says so
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get("/v1/jobs", headers=headers).status_code == 200
            with session_scope(settings.database_url) as session:
                assert keys.revoke_key(session, key_id=key.split("_")[1])
            first = client.get("/v1/jobs", headers=headers).status_code
            if ttl == 0:
                assert first == 401
                continue
            assert first == 200  # cached for up to `ttl` seconds
            clock.advance(ttl)
            assert client.get("/v1/jobs", headers=headers).status_code == 200  # exactly ttl: still cached
            clock.advance(0.01)
            assert client.get("/v1/jobs", headers=headers).status_code == 401
            # a key that never existed is refused even while another is cached
            wrong = {"Authorization": f"Bearer {key[:-4]}abcd"}
            assert client.get("/v1/jobs", headers=wrong).status_code == 401


def test_workers_need_a_broker(env: dict[str, str], root: Path) -> None:
    """`pare serve --workers 2` in the embedded mode is a usage error, not a second job runner."""
    import subprocess

    embedded = {k: v for k, v in env.items() if k != "PARE_BROKER_URL"}
    proc = subprocess.run(
        [*helpers.PARE, "serve", "--workers", "2", "--no-migrate"],
        env=embedded,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--workers needs PARE_BROKER_URL" in proc.stderr


@pytest.mark.timeout(180)
def test_several_api_processes_share_the_port_and_the_metrics(
    env: dict[str, str], root: Path, key_a: str
) -> None:
    """`pare serve --workers 2`: both processes answer, and /metrics (from either) counts the
    requests of both."""
    port = helpers.free_port()
    log = root / "api-workers.log"
    proc = helpers.start(
        [
            *helpers.PARE,
            "serve",
            "--port",
            str(port),
            "--no-migrate",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=root,
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        helpers.wait_http(f"{url}/healthz", proc, log)
        statuses = asyncio.run(_burst(url, key_a, "/v1/jobs", 60))
        assert statuses == [200] * 60
        text = httpx.get(f"{url}/metrics", timeout=10).text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("pare_http_requests_total{")
            and 'route="/v1/jobs"' in line
            and 'method="GET"' in line
            and 'status="200"' in line
        )
        assert counted >= 60, text[:2000]
        assert "pare_jobs{" in text
    finally:
        helpers.stop(proc)
