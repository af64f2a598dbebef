"""The one place where errors become HTTP: RFC 9457 application/problem+json with code and field."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from app.errors import ServiceError
from core.errors import PareError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://pare.dev/problems/"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def problem(
    status: int, code: str, title: str, detail: str, *, field: str | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": TYPE_BASE + code, "title": title, "status": status, "detail": detail, "code": code}
    if field is not None:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    response = problem(exc.status, exc.code, exc.title, exc.detail, field=exc.field)
    response.headers.update(exc.headers)
    return response


async def _pare_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PareError)
    title = exc.code.replace("_", " ").capitalize()
    return problem(422, exc.code, title, str(exc), field=exc.field)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}"
    return problem(422, "invalid_request", "Invalid request", detail, field=first["field"], errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    response = problem(exc.status_code, code, str(exc.detail), str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed_methods(request, (exc.headers or {}).get("Allow", ""))
    return response


def _allowed_methods(request: Request, route_allow: str) -> str:
    """Every method served at this path (RFC 9110 §15.5.6). The router's own `Allow` names only the
    methods of the first route whose path matched (GET /v1/jobs and POST /v1/jobs are two routes),
    so the document's paths that match are added."""
    methods = {m.strip().upper() for m in route_allow.split(",") if m.strip()}
    for template, item in request.app.openapi().get("paths", {}).items():
        if _template(template).fullmatch(request.scope["path"]):
            methods.update(m.upper() for m in item if m in HTTP_METHODS)
    return ", ".join(sorted(methods))


@functools.lru_cache(maxsize=256)
def _template(path: str) -> re.Pattern[str]:
    """/v1/jobs/{job_id} as a pattern of one path segment per parameter."""
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)))


async def _database_down(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return problem(
        503, "database_unavailable", "Database unavailable", "the database is unreachable; retry later"
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred")


def install(app: FastAPI) -> None:
    """Register every error mapping on the app."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(PareError, _pare_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(PoolTimeout, _database_down)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    app.add_exception_handler(Exception, _unexpected)


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated or type(exc.orig).__name__ in ("OperationalError", "InterfaceError"):
        return await _database_down(request, exc)
    return await _unexpected(request, exc)
