"""The HTTP surface without running a job: health, docs, auth, uploads, validation before queueing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import factories
from tests.factories import job_body
from tests.reliability import record
from tests.service import helpers
from tests.service.helpers import assert_problem


def test_health_docs_capabilities_metrics(api_url: str, client_a: httpx.Client) -> None:
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api_url}/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["broker"] == "ok"
    assert httpx.get(f"{api_url}/docs").status_code == 200
    paths = httpx.get(f"{api_url}/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}/artifacts/{name}", "/v1/datasets", "/v1/estimates"} <= paths.keys()
    caps = client_a.get("/v1/capabilities").json()
    assert [m["id"] for m in caps["methods"]] == ["id", "svd", "magnitude", "block_lowrank", "monarch", "mpo"]
    mpo = next(m for m in caps["methods"] if m["id"] == "mpo")
    assert mpo["structures"] == ["mpo"] and {"cores", "bond"} <= mpo["params"]["properties"].keys()
    assert "bert" in caps["model_types"]
    assert set(caps["evaluation_tasks"]) == {"perplexity", "classification", "sts", "latency"}
    metrics = httpx.get(f"{api_url}/metrics").text
    assert "pare_http_requests_total" in metrics and 'pare_jobs{status="queued"}' in metrics


def test_auth_required(api_url: str) -> None:
    assert_problem(httpx.get(f"{api_url}/v1/jobs"), 401)
    assert_problem(httpx.get(f"{api_url}/v1/jobs", headers={"Authorization": "Bearer pare_nope_x"}), 401)
    assert_problem(httpx.get(f"{api_url}/v1/jobs", headers={"Authorization": "Bearer garbage"}), 401)


def test_estimate(client_a: httpx.Client) -> None:
    body = {"model": {"id": factories.TINY_BERT}, "target": {"mac_ratio": 0.5, "reference_seq_len": 64}}
    response = client_a.post("/v1/estimates", json=body)
    assert response.status_code == 200, response.text
    estimate = response.json()
    assert estimate["model"]["model_type"] == "bert" and estimate["block_macs"] > 0
    assert 0 < estimate["planned"]["mac_ratio"] <= 0.5 + 1e-6
    assert_problem(
        client_a.post("/v1/estimates", json={**body, "target": {"mac_ratio": 2}}), 422, "target.mac_ratio"
    )


def test_upload_formats(client_a: httpx.Client) -> None:
    ok = client_a.post("/v1/datasets", files={"file": ("c.jsonl", factories.calibration_lines().encode())})
    assert ok.status_code == 201 and ok.json()["id"].startswith("ds_") and ok.json()["format"] == "jsonl"
    txt = client_a.post("/v1/datasets", files={"file": ("c.txt", b"hello world\nmore text\n")})
    assert txt.status_code == 201 and txt.json()["format"] == "txt"
    assert_problem(client_a.post("/v1/datasets", files={"file": ("c.jsonl", b"{not json\n")}), 422, "file")
    assert_problem(client_a.post("/v1/datasets", files={"file": ("c.exe", b"MZ...")}), 422, "file")
    assert_problem(client_a.post("/v1/datasets", files={"file": ("c.txt", b"")}), 422, "file")
    assert_problem(
        client_a.post("/v1/datasets", files={"file": ("c.parquet", b"not parquet at all")}), 422, "file"
    )
    assert_problem(client_a.post("/v1/datasets", files={"other": ("c.txt", b"x")}), 422, "file")


def test_upload_format_from_part_content_type(client_a: httpx.Client, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file name without a known suffix takes its format from the part's Content-Type, and the
    worker reads the stored file as that format whatever its name."""
    from app.db.engine import session_scope
    from app.db.models import Job
    from app.storage import make_storage
    from workers.tasks import fetch_data

    lines = factories.calibration_lines().encode()
    ok = client_a.post("/v1/datasets", files={"file": ("calibration", lines, "application/jsonl")})
    assert ok.status_code == 201 and ok.json()["format"] == "jsonl", ok.text
    rows = ("rows", b"text\nhello\n", "text/tab-separated-values")
    tsv = client_a.post("/v1/datasets", files={"file": rows})
    assert tsv.status_code == 201 and tsv.json()["format"] == "tsv", tsv.text
    refused = client_a.post("/v1/datasets", files={"file": ("blob", lines, "application/octet-stream")})
    assert "Content-Type" in assert_problem(refused, 422, "file")["detail"]
    job_id = factories.insert_queued(settings, client_a, ok.json()["id"])
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        found = fetch_data(settings=settings, storage=make_storage(settings), job=job, dest=tmp_path)
    path, sha = found[ok.json()["id"]]
    assert path.suffix == ".jsonl" and path.read_bytes() == lines and sha == ok.json()["sha256"]


def test_upload_size_capped_while_streaming(client_a: httpx.Client, settings, root: Path) -> None:  # type: ignore[no-untyped-def]
    big = b"word " * (settings.max_upload_bytes // 5 + 1000)
    assert_problem(client_a.post("/v1/datasets", files={"file": ("big.txt", big)}), 413)

    def chunks():  # type: ignore[no-untyped-def]
        boundary = b"xyzBOUNDARY"
        yield (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        )
        for _ in range(64):
            yield b"w" * (64 * 1024)
        yield b"\r\n--" + boundary + b"--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=xyzBOUNDARY"}
    assert_problem(
        client_a.post("/v1/datasets", content=chunks(), headers=headers), 413
    )  # chunked, no length
    spool = Path(settings.work_dir) / "uploads"
    assert not spool.exists() or not list(spool.iterdir())  # nothing left behind
    assert client_a.get("/v1/capabilities").status_code == 200  # still responsive
    record("huge or malformed upload",
           test="tests/service/test_api.py::test_upload_size_capped_while_streaming",
           cap_bytes=settings.max_upload_bytes, sized_upload_bytes=len(big),
           chunked_upload_bytes=sum(len(c) for c in chunks()),
           spool_files_left=len(list(spool.iterdir())) if spool.exists() else 0,
           status_after=client_a.get("/v1/capabilities").status_code)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"target": {"mac_ratio": 0}}, "target.mac_ratio"),
        ({"target": {"mac_ratio": 1.5}}, "target.mac_ratio"),
        ({"target": {"mac_ratio": -0.1}}, "target.mac_ratio"),
        ({"model": {"id": "../../etc"}}, "model.id"),
        ({"model": {"id": "/etc"}}, "model.id"),
        ({"model": {"id": "https://evil.example/model"}}, "model.id"),
        ({"model": {"id": "file:///etc/passwd"}}, "model.id"),
        ({"model": {"id": "a/b/c"}}, "model.id"),
        ({"model": {"id": "org/na\x00me"}}, "model.id"),
        ({"model": {"id": "org/not-in-cache"}}, "model.id"),
        ({"model": {"id": factories.AUTO_MAP}}, "model.id"),
        ({"method": {"name": "prune-it"}}, "method.name"),
        ({"evaluation": [{"task": "vibes"}]}, "evaluation.0.task"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client_a: httpx.Client, dataset_id: str, patch: dict, field: str
) -> None:  # type: ignore[type-arg]
    body = job_body(dataset_id) | patch
    assert_problem(client_a.post("/v1/jobs", json=body), 422, field)


def test_missing_dataset_and_bad_refs(client_a: httpx.Client, dataset_id: str) -> None:
    body = job_body("ds_doesnotexist")
    assert_problem(client_a.post("/v1/jobs", json=body), 422, "calibration.dataset")
    body = job_body(dataset_id, evaluation=[{"task": "sts", "dataset": "ds_nope"}])
    assert_problem(client_a.post("/v1/jobs", json=body), 422, "evaluation.0.dataset")
    body = job_body("../../etc/passwd")
    assert_problem(client_a.post("/v1/jobs", json=body), 422, "calibration.dataset")


def test_pickle_only_refused_without_unpickling(client_a: httpx.Client, dataset_id: str, root: Path) -> None:
    body = job_body(dataset_id, model={"id": factories.PICKLE_ONLY})
    problem = assert_problem(client_a.post("/v1/jobs", json=body), 422, "model.id")
    assert problem["code"] == "model_refused"
    assert not (root / "SENTINEL").exists()
    record("pickle weights (`.bin`)",
           test="tests/service/test_api.py::test_pickle_only_refused_without_unpickling",
           status=problem["status"], code=problem["code"],
           sentinel_files_found=int((root / "SENTINEL").exists()))


def test_database_down_is_503_problem(settings, root: Path) -> None:  # type: ignore[no-untyped-def]
    """With the database unreachable the API answers 503 problem+json, never a bare 500."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.queue import NullDispatcher

    down = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{helpers.free_port()}/nothing"}
    )
    with TestClient(
        create_app(down, dispatcher=NullDispatcher(), reaper=False), raise_server_exceptions=False
    ) as client:
        headers = {"Authorization": "Bearer pare_abc_def"}
        for response in (
            client.get("/v1/jobs", headers=headers),
            client.get("/v1/jobs/job_0123456789abcdef01234567", headers=headers),
        ):
            body = assert_problem(response, 503)
            assert body["code"] == "database_unavailable"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
