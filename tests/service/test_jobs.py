"""Jobs over HTTP without the pipeline: idempotency, pagination, cancel, tenant isolation, artifacts."""

from __future__ import annotations

import hashlib
import secrets
import threading
from pathlib import Path

import httpx

from app.db.engine import session_scope
from app.db.jobstate import claim_job
from app.db.models import Artifact, Job
from app.storage import make_storage
from tests.factories import insert_queued, job_body, make_key
from tests.reliability import record
from tests.service.helpers import assert_problem


def test_submit_shows_job_and_location(client_a: httpx.Client, dataset_id: str) -> None:
    response = client_a.post("/v1/jobs", json=job_body(dataset_id))
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running", "succeeded", "failed")
    assert job["model"]["id"] == "pare-test/tiny-bert" and job["target"]["mac_ratio"] == 0.5
    assert (
        job["resolved"]["model"]["model_type"] == "bert" and len(job["resolved"]["model"]["revision"]) == 40
    )
    assert set(job["progress"]) >= {"stage", "block", "total_blocks", "percent", "eta_seconds"}
    assert client_a.get(job["id"] and f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    events = client_a.get(f"/v1/jobs/{job['id']}/events").json()
    assert events["object"] == "list" and events["data"][0]["type"] == "job.queued"


def test_idempotency_concurrent_and_mismatch(client_a: httpx.Client, dataset_id: str) -> None:
    key = f"idem-{secrets.token_hex(4)}"
    body = job_body(dataset_id)
    results: list[httpx.Response] = []

    def post() -> None:
        results.append(client_a.post("/v1/jobs", json=body, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} <= {202, 409}, [r.text for r in results]
    ids = {r.json()["id"] for r in results if r.status_code == 202}
    assert len(ids) == 1
    replay = client_a.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 202 and replay.json()["id"] in ids
    mismatch = client_a.post(
        "/v1/jobs", json=job_body(dataset_id, target={"mac_ratio": 0.7}), headers={"Idempotency-Key": key}
    )
    assert_problem(mismatch, 422, "Idempotency-Key")
    listed = client_a.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert sum(1 for j in listed if j["id"] in ids) == 1
    # a refused first attempt does not burn the key
    key2 = f"idem-{secrets.token_hex(4)}"
    bad = job_body("ds_missing")
    assert client_a.post("/v1/jobs", json=bad, headers={"Idempotency-Key": key2}).status_code == 422
    assert client_a.post("/v1/jobs", json=body, headers={"Idempotency-Key": key2}).status_code == 202
    record("duplicate POST", test="tests/service/test_jobs.py::test_idempotency_concurrent_and_mismatch",
           concurrent_posts=len(results), answered_202=sum(r.status_code == 202 for r in results),
           answered_409=sum(r.status_code == 409 for r in results),
           jobs_created=sum(1 for j in listed if j["id"] in ids), replay_status=replay.status_code,
           mismatch_status=mismatch.status_code)


def test_pagination_and_filters(api_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    key = make_key(settings, f"pager-{secrets.token_hex(3)}")
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        ds = client.post("/v1/datasets", files={"file": ("c.txt", b"some text\n")}).json()["id"]
        created = [client.post("/v1/jobs", json=job_body(ds)).json()["id"] for _ in range(5)]
        seen, after = [], None
        while True:
            page = client.get("/v1/jobs", params={"limit": 2} | ({"after": after} if after else {})).json()
            assert page["object"] == "list"
            seen += [j["id"] for j in page["data"]]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        assert seen == sorted(created, reverse=True)
        assert client.get("/v1/jobs", params={"model": "pare-test/tiny-bert"}).json()["data"]
        assert client.get("/v1/jobs", params={"model": "other/model"}).json()["data"] == []
        assert all(
            j["status"] == "cancelled"
            for j in client.get("/v1/jobs", params={"status": "cancelled"}).json()["data"]
        )
        assert_problem(client.get("/v1/jobs", params={"status": "bogus"}), 422, "status")
        assert_problem(client.get("/v1/jobs", params={"limit": 0}), 422, "limit")


def test_cancel_queued_and_running(client_a: httpx.Client, dataset_id: str, settings) -> None:  # type: ignore[no-untyped-def]
    from app.db.jobstate import job_state
    from workers.tasks import CancelCheck

    queued = insert_queued(settings, client_a, dataset_id)
    cancelled = client_a.post(f"/v1/jobs/{queued}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_problem(client_a.post(f"/v1/jobs/{queued}/cancel"), 409)

    running = insert_queued(settings, client_a, dataset_id)
    with session_scope(settings.database_url) as session:
        claim = claim_job(session, job_id=running, owner="test", lease_seconds=30)
    assert claim is not None
    check = CancelCheck(settings=settings, claim=claim, lost=threading.Event())
    assert check() is False
    assert client_a.post(f"/v1/jobs/{running}/cancel").json()["status"] == "cancelling"
    check._checked = 0.0
    assert check() is True  # the run sees it at its next block boundary
    from app.db.jobstate import finish_job

    with session_scope(settings.database_url) as session:
        assert finish_job(session, claim=claim, status="cancelled")
        assert job_state(session, job_id=running)[0] == "cancelled"
    types = [e["type"] for e in client_a.get(f"/v1/jobs/{running}/events").json()["data"]]
    assert types == ["job.queued", "job.running", "job.cancelling", "job.cancelled"]


def _fake_succeeded_job(settings, client: httpx.Client, dataset: str, payload: bytes) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A job marked succeeded with one stored artifact (what the worker writes), for download tests."""
    job_id = insert_queued(settings, client, dataset)
    storage = make_storage(settings)
    src = Path(settings.work_dir) / f"{job_id}.safetensors"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    stored = storage.put_file(f"jobs/{job_id}/1/model.safetensors", src)
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        job.status = "succeeded"
        session.add(
            Artifact(
                job_id=job_id,
                name="model.safetensors",
                storage_key=stored.key,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
                content_type="application/octet-stream",
            )
        )
    return job_id, stored.key


def test_artifact_download_range_etag_and_corruption(
    client_a: httpx.Client, dataset_id: str, settings
) -> None:  # type: ignore[no-untyped-def]
    payload = bytes(range(256)) * 400
    job_id, key = _fake_succeeded_job(settings, client_a, dataset_id, payload)
    listing = client_a.get(f"/v1/jobs/{job_id}/artifacts").json()
    assert listing[0]["name"] == "model.safetensors" and listing[0]["size_bytes"] == len(payload)
    sha = hashlib.sha256(payload).hexdigest()
    assert listing[0]["sha256"] == sha
    full = client_a.get(listing[0]["download_url"])
    assert full.status_code == 200 and full.content == payload and full.headers["etag"] == f'"{sha}"'
    part = client_a.get(listing[0]["download_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == payload[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(payload)}"
    assert client_a.get(listing[0]["download_url"], headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    assert_problem(client_a.get(f"/v1/jobs/{job_id}/artifacts/nope.bin"), 404)
    # flip one byte in storage: the service refuses to serve it
    path = Path(settings.storage_url) / key
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    refused = client_a.get(listing[0]["download_url"])
    assert assert_problem(refused, 409)["code"] == "artifact_corrupt"
    record("corrupt stored artifact",
           test="tests/service/test_jobs.py::test_artifact_download_range_etag_and_corruption",
           bytes_flipped=1, served_corrupt=0, status=refused.status_code)


def test_tenant_isolation(client_a: httpx.Client, client_b: httpx.Client, dataset_id: str, settings) -> None:  # type: ignore[no-untyped-def]
    job_id, _ = _fake_succeeded_job(settings, client_a, dataset_id, b"secret weights")
    routes = [
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("GET", f"/v1/jobs/{job_id}/artifacts"),
        ("GET", f"/v1/jobs/{job_id}/artifacts/model.safetensors"),
    ]
    responses = [client_b.request(method, path) for method, path in routes]
    # a cross-tenant read: anything but 404, or a body carrying A's bytes
    reads = sum(r.status_code != 404 or b"secret weights" in r.content for r in responses)
    for response in responses:
        assert_problem(response, 404)
        assert job_id not in response.text or "no job" in response.text
        assert b"secret weights" not in response.content
    sse = client_b.get(f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
    assert_problem(sse, 404)
    assert job_id not in {j["id"] for j in client_b.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    assert_problem(client_b.post("/v1/jobs", json=job_body(dataset_id)), 422, "calibration.dataset")
    assert client_a.get(f"/v1/jobs/{job_id}").status_code == 200
    assert client_b.delete(f"/v1/jobs/{job_id}/artifacts").status_code == 404
    assert client_a.get(f"/v1/jobs/{job_id}/artifacts").json()  # nothing of A's was deleted
    record("another tenant's ids", test="tests/service/test_jobs.py::test_tenant_isolation",
           routes_tried=len(routes) + 4, cross_tenant_reads=reads)
