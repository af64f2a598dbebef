"""Limits of a shared service: per-tenant quotas (unfinished jobs, stored bytes), rate limits with
429 + Retry-After, DELETE of datasets and artifacts, and the retention pass, with storage and the
database kept consistent. The API runs in-process (TestClient) with the limits turned on, against
the session's real Postgres database and storage."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.db.engine import session_scope
from app.db.models import Artifact, Dataset, Job, utcnow
from app.main import create_app
from app.queue import NullDispatcher
from app.services import quotas, retention
from app.storage import make_storage
from tests.factories import job_body, make_key
from tests.reliability import record
from tests.service.helpers import FakeClock, assert_problem
from tests.service.test_jobs import _fake_succeeded_job


@contextmanager
def _client(settings, **limits) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(settings.model_copy(update=limits), dispatcher=NullDispatcher(), reaper=False)
    key = make_key(settings, f"limits-{secrets.token_hex(3)}")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def _upload(client: TestClient, content: bytes = b"some text\n") -> str:
    response = client.post("/v1/datasets", files={"file": ("c.txt", content)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_unfinished_jobs_quota(settings) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, max_active_jobs_per_tenant=2) as client:
        ds = _upload(client)
        first = [client.post("/v1/jobs", json=job_body(ds)) for _ in range(2)]
        assert all(r.status_code == 202 for r in first), first[0].text
        refused = client.post("/v1/jobs", json=job_body(ds))
        body = assert_problem(refused, 429)
        assert body["code"] == "quota_exceeded" and int(refused.headers["retry-after"]) > 0
        assert client.post(f"/v1/jobs/{first[0].json()['id']}/cancel").json()["status"] == "cancelled"
        assert client.post("/v1/jobs", json=job_body(ds)).status_code == 202  # a slot freed


def test_storage_quota(settings) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, max_storage_bytes_per_tenant=1000) as client:
        ds = _upload(client, b"x" * 600)
        refused = client.post("/v1/datasets", files={"file": ("d.txt", b"y" * 600)})
        assert assert_problem(refused, 429)["code"] == "quota_exceeded" and refused.headers["retry-after"]
        assert client.delete(f"/v1/datasets/{ds}").status_code == 204
        assert client.post("/v1/datasets", files={"file": ("d.txt", b"y" * 600)}).status_code == 201


def test_rate_limit_answers_429_with_retry_after(settings) -> None:  # type: ignore[no-untyped-def]
    with _client(settings, rate_limit_per_second=0.5, rate_limit_burst=5) as client:
        statuses = [client.get("/v1/jobs").status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
        limited = client.get("/v1/jobs")
        assert assert_problem(limited, 429)["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        assert client.get("/healthz").status_code == 200  # unauthenticated probes are not limited
    clock = FakeClock()
    limiter = quotas.RateLimiter(2.0, 2, clock=clock)
    limiter.take("t")
    limiter.take("t")
    try:
        limiter.take("t")
        raise AssertionError("a third request inside the burst was allowed")
    except quotas.RateLimited as exc:
        assert exc.headers["Retry-After"] == "1"
    clock.advance(0.5)
    limiter.take("t")  # one token back after half a second at 2/s
    limiter.take("u")  # other tenants have their own bucket
    record("rate limits and quotas", test="tests/service/test_limits.py",
           limited_requests=statuses.count(429))


def test_delete_keeps_storage_and_database_consistent(settings) -> None:  # type: ignore[no-untyped-def]
    storage_root = Path(settings.storage_url)
    with _client(settings) as client:
        ds = _upload(client)
        key = next(iter(_dataset_keys(settings, ds)))
        assert (storage_root / key).exists()
        job = client.post("/v1/jobs", json=job_body(ds)).json()["id"]
        busy = client.delete(f"/v1/datasets/{ds}")
        assert assert_problem(busy, 409)["code"] == "conflict" and (storage_root / key).exists()
        assert client.post(f"/v1/jobs/{job}/cancel").status_code == 200
        assert client.delete(f"/v1/datasets/{ds}").status_code == 204
        assert not (storage_root / key).exists() and not _dataset_keys(settings, ds)
        assert_problem(client.delete(f"/v1/datasets/{ds}"), 404)
        assert_problem(client.delete("/v1/datasets/ds_%00"), 422)

        ds2 = _upload(client)
        done, artifact_key = _fake_succeeded_job(settings, _as_httpx(client), ds2, b"weights")
        assert (storage_root / artifact_key).exists()
        assert client.delete(f"/v1/jobs/{done}/artifacts").status_code == 204
        assert not (storage_root / artifact_key).exists()
        gone = assert_problem(client.get(f"/v1/jobs/{done}/artifacts"), 404)
        assert gone["code"] == "artifacts_deleted" and gone["field"] == "job_id"
        name = artifact_key.split("/", 3)[3]
        download = client.get(f"/v1/jobs/{done}/artifacts/{name}")
        assert assert_problem(download, 404)["code"] == "artifacts_deleted"
        deleted_at = client.get(f"/v1/jobs/{done}").json()["artifacts_deleted_at"]
        assert deleted_at is not None and client.get(f"/v1/jobs/{done}").json()["status"] == "succeeded"
        assert client.delete(f"/v1/jobs/{done}/artifacts").status_code == 204  # a retried DELETE
        assert client.get(f"/v1/jobs/{done}").json()["artifacts_deleted_at"] == deleted_at
        queued = client.post("/v1/jobs", json=job_body(ds2)).json()["id"]
        assert assert_problem(client.delete(f"/v1/jobs/{queued}/artifacts"), 409)["field"] == "job_id"
    with _client(settings) as other:  # another tenant's ids are 404, and nothing is deleted
        assert_problem(other.delete(f"/v1/datasets/{ds2}"), 404)
        assert_problem(other.delete(f"/v1/jobs/{done}/artifacts"), 404)
    assert _dataset_keys(settings, ds2)


def test_retention_pass_deletes_old_datasets_and_artifacts(settings) -> None:  # type: ignore[no-untyped-def]
    storage_root = Path(settings.storage_url)
    with _client(settings) as client:
        old, new, in_use = _upload(client), _upload(client), _upload(client)
        done, artifact_key = _fake_succeeded_job(settings, _as_httpx(client), old, b"old weights")
        client.post("/v1/jobs", json=job_body(in_use))  # a queued job still reads it
    long_ago = utcnow() - timedelta(days=40)
    with session_scope(settings.database_url) as session:
        session.execute(update(Dataset).where(Dataset.id.in_([old, in_use])).values(created_at=long_ago))
        session.execute(update(Artifact).where(Artifact.job_id == done).values(created_at=long_ago))
    with session_scope(settings.database_url) as session:
        expired = retention.expire(session, storage=make_storage(settings), older_than_days=30)
    assert expired["artifacts"] >= 1 and expired["datasets"] >= 1
    assert not _dataset_keys(settings, old)
    assert _dataset_keys(settings, new) and _dataset_keys(settings, in_use)
    assert not (storage_root / artifact_key).exists()
    with session_scope(settings.database_url) as session:
        assert session.scalars(select(Artifact).where(Artifact.job_id == done)).first() is None
        kept = session.get(Job, done)  # the job and its results stay; only files go
        assert kept is not None and kept.artifacts_deleted_at is not None
    for key in _dataset_keys(settings, new) | _dataset_keys(settings, in_use):
        assert (storage_root / key).exists()


def _dataset_keys(settings, dataset_id: str) -> set[str]:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as session:
        return set(session.scalars(select(Dataset.storage_key).where(Dataset.id == dataset_id)))


class _as_httpx:  # noqa: N801 - _fake_succeeded_job reads only .headers of an httpx client
    def __init__(self, client: TestClient) -> None:
        self.headers = client.headers
