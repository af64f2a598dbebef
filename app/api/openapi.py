"""The OpenAPI document, completed with what every route really answers.

FastAPI documents each route's declared responses as `application/json`. This pass, run once when
the document is first built, makes the document say what the service does on the wire:

- every 4xx/5xx response is `application/problem+json` (app.api.problems renders all of them);
- the statuses that come from shared machinery rather than from the route are declared where they
  apply: 401 and 429 on every authenticated route (the bearer dependency, which also spends the
  tenant's rate limit; quotas refuse with 429 as well), 422 wherever a parameter or body
  is validated, 400 and 413 on JSON bodies (an unparsable body; the body-size cap of
  app.api.limits), 503 wherever the database is read (app.api.problems maps an unreachable one);
- an uploaded file part is one of the dataset formats, by its Content-Type;
- `/metrics` answers text/plain (Prometheus' exposition format) and artifact downloads answer
  their recorded content type (JSON, text or bytes);
- the job request's open objects are the catalogue's: `method` is one of the methods, each with its
  own `params` schema (`core.methods`), an evaluation is one of the tasks with its own options
  (`core.evaluation`), and calibration sizes are capped at this deployment's PARE_MAX_NUM_SAMPLES
  and PARE_MAX_SEQ_LENGTH, all of which the submit-time validation enforces;
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
from app.services.datasets import MEDIA_TYPES
from app.settings import Settings
from core import methods as catalogue
from core.evaluation import OPTIONS as TASK_OPTIONS

PROBLEM = "application/problem+json"
REF = "#/components/schemas/{model}"
PROBLEM_SCHEMA = {"$ref": REF.format(model="Problem")}
DOWNLOAD_TYPES = ("application/octet-stream", "application/json", "text/plain")
# The formats of app.services.datasets, as a file part's Content-Type (for a name without a suffix)
UPLOAD_TYPES = ", ".join(MEDIA_TYPES)
SHARED = {
    400: "Unparsable request body",
    401: "Missing or invalid API key",
    413: "Request body larger than PARE_MAX_BODY_BYTES",
    422: "Invalid request (names the field)",
    429: "Rate limit or quota of this tenant reached; retry after Retry-After seconds",
    503: "Database unavailable; retry later",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the completed document from /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            complete(document, settings)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], settings: Settings) -> None:
    """Complete `document` in place (see the module docstring)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema(ref_template=REF))
    _catalogue_variants(components)
    _limits(components, settings)
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
    upload = document["paths"].get("/v1/datasets", {}).get("post", {}).get("requestBody", {})
    form = upload.get("content", {}).get("multipart/form-data")
    if form is not None:
        form.setdefault("encoding", {"file": {"contentType": UPLOAD_TYPES}})
    for unused in ("HTTPValidationError", "ValidationError"):  # 422s are problems, not FastAPI's shape
        components.pop(unused, None)


def _shared_responses(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    body = operation.get("requestBody", {}).get("content", {})
    wanted = []
    if operation.get("security"):
        wanted += [401, 429, 503]
    if operation.get("parameters") or body:
        wanted.append(422)
    if "application/json" in body:
        wanted += [400, 413]
    if path == "/readyz":
        wanted.append(503)
    for status in wanted:
        responses.setdefault(str(status), {"description": SHARED[status]})
    if "429" in responses:
        responses["429"].setdefault("headers", RETRY_AFTER)


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


def _catalogue_variants(components: dict[str, Any]) -> None:
    method = components.get("MethodSpec")
    if method is not None:
        method["oneOf"] = [
            {
                "type": "object",
                "title": f"Method {info.name}",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "const": info.name},
                    "params": _model_schema(components, info.params),
                },
            }
            for info in catalogue.entries()
        ]
    target = components.get("TargetSpec", components.get("TargetSpec-Input"))
    if target is not None:  # the four forms core.targets.parse accepts, each closed
        fields = target.get("properties", {})
        target["oneOf"] = [
            {
                "type": "object",
                "title": title,
                "required": list(form),
                "additionalProperties": False,
                "properties": {k: _not_null(fields[k]) for k in (*form, "reference_seq_len") if k in fields},
            }
            for title, form in (
                ("One MAC ratio", ("mac_ratio",)),
                ("A sweep", ("mac_ratios",)),
                ("At most an absolute drop of a metric", ("max_drop", "metric")),
                ("At most a ratio worse/dense of a metric", ("max_ratio", "metric")),
            )
        ]
        if "TargetSpec-Output" in components:  # echoed back as given (no nulls): one of the same forms
            components["TargetSpec-Output"] = {**target, "title": "TargetSpec"}
    evaluation = components.get("EvaluationSpec")
    if evaluation is not None:
        shared = {k: v for k, v in evaluation.get("properties", {}).items() if k not in ("task", "options")}
        variants = []
        for task, model in TASK_OPTIONS.items():
            options = _model_schema(components, model)
            properties = {**options.get("properties", {}), **shared}
            properties.update(task={"type": "string", "const": task}, options=options)
            variants.append(
                {
                    "type": "object",
                    "title": f"Evaluation {task}",
                    "required": ["task"],
                    "additionalProperties": False,  # keys beside these are the task's options
                    "properties": properties,
                }
            )
        evaluation["oneOf"] = variants


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its `null` branch (a form's fields are all given)."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}


def _model_schema(components: dict[str, Any], model: Any) -> dict[str, Any]:
    """A pydantic model's JSON schema, its nested definitions moved into the components."""
    schema: dict[str, Any] = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    return schema


def _limits(components: dict[str, Any], settings: Settings) -> None:
    calibration = components.get("CalibrationSpec", {}).get("properties", {})
    for name, cap in (("num_samples", settings.max_num_samples), ("max_seq_length", settings.max_seq_length)):
        if name in calibration:
            calibration[name]["maximum"] = min(calibration[name].get("maximum", cap), cap)
