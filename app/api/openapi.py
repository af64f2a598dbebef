"""The OpenAPI document, completed with what every route really answers.

FastAPI documents each route's declared responses as `application/json`. This pass, run once when
the document is first built, makes the document say what the service does on the wire:

- every 4xx/5xx response is `application/problem+json` (app.api.problems renders all of them);
- the statuses that come from shared machinery rather than from the route are declared where they
  apply: 401 on every authenticated route (the bearer dependency), 422 wherever a parameter or body
  is validated, 400 and 413 on JSON bodies (an unparsable body; the body-size cap of
  app.api.limits), 503 wherever the database is read (app.api.problems maps an unreachable one);
- `/metrics` answers text/plain (Prometheus' exposition format) and artifact downloads answer
  their recorded content type (JSON, text or bytes);
- an optional query or header parameter is documented as its type, not `anyOf [type, null]`: a URL
  or a header has no null, so a client following the schema could only send the string "null";
- OpenAPI links from a created job to the routes that take its id, and from an uploaded dataset to
  a job that calibrates on it (the stateful phase of schema-driven tests follows them).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.schemas import Problem

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
DOWNLOAD_TYPES = ("application/octet-stream", "application/json", "text/plain")
SHARED = {
    400: "Unparsable request body",
    401: "Missing or invalid API key",
    413: "Request body larger than PARE_MAX_BODY_BYTES",
    422: "Invalid request (names the field)",
    503: "Database unavailable; retry later",
}


def install(app: FastAPI) -> None:
    """Serve the completed document from /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> None:
    """Complete `document` in place (see the module docstring)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _shared_responses(path, operation)
            _problem_content(operation)
            _no_null_parameters(operation)
            if path == "/metrics":
                operation["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
            if path.startswith("/v1/jobs/{job_id}/artifacts/") and method == "get":
                for status in ("200", "206"):
                    operation["responses"][status]["content"] = {
                        media: {"schema": {"type": "string", "format": "binary"}} for media in DOWNLOAD_TYPES
                    }
    _links(document)
    for unused in ("HTTPValidationError", "ValidationError"):  # 422s are problems, not FastAPI's shape
        components.pop(unused, None)


def _shared_responses(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    body = operation.get("requestBody", {}).get("content", {})
    wanted = []
    if operation.get("security"):
        wanted += [401, 503]
    if operation.get("parameters") or body:
        wanted.append(422)
    if "application/json" in body:
        wanted += [400, 413]
    if path == "/readyz":
        wanted.append(503)
    for status in wanted:
        responses.setdefault(str(status), {"description": SHARED[status]})


def _problem_content(operation: dict[str, Any]) -> None:
    for status, response in operation["responses"].items():
        if status[0] in "45":
            response["content"] = {PROBLEM: {"schema": PROBLEM_SCHEMA}}


def _no_null_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        options = schema.get("anyOf")
        if not options:
            continue
        kept = [option for option in options if option.get("type") != "null"]
        if len(kept) == len(options):
            continue
        del schema["anyOf"]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
        if schema.get("default", 0) is None:
            del schema["default"]


def _links(document: dict[str, Any]) -> None:
    paths = document.get("paths", {})

    def operation_id(path: str, method: str) -> str | None:
        return paths.get(path, {}).get(method, {}).get("operationId")

    by_job_id = {
        "GetJob": ("/v1/jobs/{job_id}", "get"),
        "CancelJob": ("/v1/jobs/{job_id}/cancel", "post"),
        "ListEvents": ("/v1/jobs/{job_id}/events", "get"),
        "ListArtifacts": ("/v1/jobs/{job_id}/artifacts", "get"),
    }
    job_links = {
        name: {"operationId": target, "parameters": {"path.job_id": "$response.body#/id"}}
        for name, (path, method) in by_job_id.items()
        if (target := operation_id(path, method))
    }
    for path, method, status in (("/v1/jobs", "post", "202"), ("/v1/jobs/{job_id}/cancel", "post", "200")):
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is not None:
            response["links"] = dict(job_links)
    submit = operation_id("/v1/jobs", "post")
    upload = paths.get("/v1/datasets", {}).get("post", {}).get("responses", {}).get("201")
    if submit and upload is not None:
        upload["links"] = {
            "SubmitJob": {
                "operationId": submit,
                "requestBody": {"calibration": {"dataset": "$response.body#/id"}},
            }
        }
