"""Hostile input, one regression test per class found (issue 15): revisions and model ids that are
paths, integers past BIGINT, NUL bytes, long file names, inverted ranges, out-of-range seeds and
options. Against the real API subprocess on Postgres (where NUL bytes and overflow used to be 500s).
Every answer is a 4xx problem+json, and no response carries a server path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.factories import TINY_BERT, job_body
from tests.reliability import record
from tests.service.helpers import assert_problem
from tests.service.test_jobs import _fake_succeeded_job

HOSTILE_REVISIONS = ["", ".", "..", "/", "../refs", "../../../../etc", "/etc", "refs/../main",
                     "main\x00", "a" * 101, "main/", ".hidden", "x.lock", "a:b", "~1", "@{0}"]
SERVER_DIRS = ["var", "var/work", "var/artifacts", "tmp", "etc", "root", "proc/self"]
_tally: dict[str, int] = {"requests": 0, "server_errors": 0, "path_leaks": 0}


def _server_paths(root: Path) -> list[str]:
    return [str(root), os.getcwd(), str(Path.home()), "/tmp/", "/work/"]


def _check(  # type: ignore[type-arg]
    response: httpx.Response, status: int | tuple[int, ...], root: Path, sent: str = ""
) -> dict:
    """A problem response with one of `status`, naming no server path (but what the caller `sent`)."""
    _tally["requests"] += 1
    statuses = (status,) if isinstance(status, int) else status
    if response.status_code >= 500:
        _tally["server_errors"] += 1
    text = response.text.replace(sent, "") if sent else response.text
    leaks = [p for p in _server_paths(root) if p in text]
    _tally["path_leaks"] += bool(leaks)
    assert not leaks, (leaks, response.text)
    assert response.status_code in statuses, response.text
    return assert_problem(response, response.status_code)


@pytest.fixture(scope="module", autouse=True)
def _figures() -> object:
    yield
    record("input validation (hostile requests)", test="tests/service/test_hostile.py", **_tally)


def test_revisions_that_are_paths_are_refused_alike(
    client_a: httpx.Client, dataset_id: str, root: Path
) -> None:
    """Every revision that is not a git ref name is refused before any file is touched; existing and
    missing directories answer the same (no file-system oracle)."""
    answers = set()
    for revision in HOSTILE_REVISIONS:
        for route, body in (
            ("/v1/estimates",
             {"model": {"id": TINY_BERT, "revision": revision}, "target": {"mac_ratio": 0.5}}),
            ("/v1/jobs", {**job_body(dataset_id), "model": {"id": TINY_BERT, "revision": revision}}),
        ):
            problem = _check(client_a.post(route, json=body), 422, root)
            assert problem["field"] == "model.revision", problem
            answers.add(problem["code"])
    assert answers <= {"invalid_request", "model_refused"}
    # a revision of another tenant's artifact directory, by absolute path: refused the same way
    absolute = str(root / "storage" / "jobs")
    problem = _check(client_a.post("/v1/estimates", json={
        "model": {"id": TINY_BERT, "revision": absolute}, "target": {"mac_ratio": 0.5}}), 422, root, absolute)
    assert problem["field"] == "model.revision"
    # a well-formed revision that does not exist is a plain not-found, whatever the disk holds
    for revision in ("v9.9", "refs-main", "0" * 40):
        problem = _check(client_a.post("/v1/estimates", json={
            "model": {"id": TINY_BERT, "revision": revision}, "target": {"mac_ratio": 0.5}}), 422, root)
        assert problem["code"] == "model_not_found"


def test_model_ids_never_name_server_directories(
    client_a: httpx.Client, dataset_id: str, root: Path
) -> None:
    for model in [*SERVER_DIRS, str(root), "./var", "../var", "~/x", "file:///etc", "a/b/c"]:
        for route, body in (
            ("/v1/estimates", {"model": {"id": model}, "target": {"mac_ratio": 0.5}}),
            ("/v1/jobs", {**job_body(dataset_id), "model": {"id": model}}),
        ):
            problem = _check(client_a.post(route, json=body), 422, root, model)
            assert problem["code"] in ("model_not_found", "model_refused", "invalid_request"), problem
    record("model id as a path or URL",
           test="tests/service/test_hostile.py::test_model_ids_never_name_server_directories",
           module_requests_so_far=_tally["requests"], module_5xx_so_far=_tally["server_errors"],
           module_path_leaks_so_far=_tally["path_leaks"], last_status=problem["status"])


def test_integers_past_bigint_and_long_digit_headers(
    client_a: httpx.Client, dataset_id: str, root: Path
) -> None:
    job_id = client_a.post("/v1/jobs", json=job_body(dataset_id)).json()["id"]
    assert client_a.get(f"/v1/jobs/{job_id}/events", params={"after": 2**63 - 1}).json()["data"] == []
    for after in (2**63, 2**64, 10**30, -1):
        _check(client_a.get(f"/v1/jobs/{job_id}/events", params={"after": after}), 422, root)
    for last in ("9" * 30, "9" * 19, "-1", "abc", "1.5"):
        try:
            response = client_a.get(f"/v1/jobs/{job_id}/events",
                                    headers={"Accept": "text/event-stream", "Last-Event-ID": last})
        except httpx.LocalProtocolError:  # httpx itself refuses to send a control character
            continue
        _check(response, 422, root)
    for seed in (2**32, 2**63, 2**70, -1):
        body = job_body(dataset_id)
        body["calibration"]["seed"] = seed
        assert _check(client_a.post("/v1/jobs", json=body), 422, root)["field"] == "calibration.seed"


def test_nul_bytes_in_ids_names_and_queries(  # type: ignore[no-untyped-def]
    client_a: httpx.Client, dataset_id: str, settings, root: Path
) -> None:
    job_id, _ = _fake_succeeded_job(settings, client_a, dataset_id, b"weights")
    for url, params in (
        (f"/v1/jobs/{job_id}%00", None),
        ("/v1/jobs/job_%00", None),
        (f"/v1/jobs/{job_id}/artifacts/model%00.safetensors", None),
        (f"/v1/jobs/{job_id}/artifacts/..%2F..%2Fetc%2Fpasswd", None),
        (f"/v1/jobs/{job_id}/events", {"after": "1\x00"}),
        ("/v1/jobs", {"model": "a\x00b"}),
        ("/v1/jobs", {"after": "job_\x00"}),
    ):
        _check(client_a.get(url, params=params), (404, 422), root)
    body = job_body(dataset_id)
    body["calibration"]["split"] = "train\x00"
    _check(client_a.post("/v1/jobs", json=body), 422, root)


def test_long_and_control_file_names(client_a: httpx.Client, root: Path) -> None:
    _check(client_a.post("/v1/datasets", files={"file": ("a" * 5000 + ".txt", b"text\n")}), 422, root)
    for name in (b"a\x00b.txt", b"a\x01b.txt", b"a" * 300 + b".txt"):  # raw: httpx would escape them
        body = (b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="' + name
                + b'"\r\n\r\ntext\n\r\n--bnd--\r\n')
        response = client_a.post("/v1/datasets", content=body,
                                 headers={"Content-Type": "multipart/form-data; boundary=bnd"})
        _check(response, 422, root)
    ok = client_a.post("/v1/datasets", files={"file": ("a" * 250 + ".txt", b"text\n")})
    assert ok.status_code == 201, ok.text


def test_inverted_range_is_416(  # type: ignore[no-untyped-def]
    client_a: httpx.Client, dataset_id: str, settings, root: Path
) -> None:
    job_id, _ = _fake_succeeded_job(settings, client_a, dataset_id, b"0123456789")
    url = f"/v1/jobs/{job_id}/artifacts/model.safetensors"
    for invalid in ("bytes=5-2", "bytes=a-b", "pages=1-2", "bytes=-", "bytes="):  # ignored: whole body
        response = client_a.get(url, headers={"Range": invalid})
        assert response.status_code == 200 and response.content == b"0123456789", (invalid, response.text)
    for unsatisfiable in ("bytes=20-30", "bytes=10-", "bytes=-0"):
        problem = _check(client_a.get(url, headers={"Range": unsatisfiable}), 416, root)
        assert problem["code"] == "range_not_satisfiable"
        assert client_a.get(url, headers={"Range": unsatisfiable}).headers["content-range"] == "bytes */10"
    part = client_a.get(url, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"


def test_method_params_and_evaluation_options_are_checked_at_submit(
    client_a: httpx.Client, dataset_id: str, root: Path
) -> None:
    for params in ({"nope": 1}, {"damping": "x"}, {"damping": float("nan")}, {"damping": float("inf")}):
        body = {**job_body(dataset_id), "method": {"name": "svd", "params": params}}
        content = json.dumps(body).encode()  # allow_nan: NaN and Infinity as Python writes them
        response = client_a.post("/v1/jobs", content=content, headers={"Content-Type": "application/json"})
        _check(response, 422, root)
    for evaluation in (
        {"task": "latency", "batch_size": -5},
        {"task": "latency", "options": {"iters": 0}},
        {"task": "perplexity", "dataset": "wikitext", "seq_len": "long"},
        {"task": "sts", "dataset": "stsb", "unknown_option": 1},
    ):
        body = job_body(dataset_id, evaluation=[evaluation])
        problem = _check(client_a.post("/v1/jobs", json=body), 422, root)
        assert problem["field"].startswith("evaluation.0"), problem


def test_oversized_json_body_is_413(client_a: httpx.Client, dataset_id: str, root: Path) -> None:
    body = job_body(dataset_id)
    body["method"]["params"] = {"pad": "x" * (3 * 1024 * 1024)}
    _check(client_a.post("/v1/jobs", json=body), 413, root)


def test_empty_idempotency_key_is_refused_not_stored(
    client_a: httpx.Client, dataset_id: str, root: Path
) -> None:
    """An empty key used to be stored as '' and the second such request hit the unique index (500)."""
    for _ in range(2):
        response = client_a.post("/v1/jobs", json=job_body(dataset_id), headers={"Idempotency-Key": ""})
        assert _check(response, 422, root)["field"] == "Idempotency-Key"
