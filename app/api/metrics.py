"""Prometheus: request counts and latency per route template, jobs by status at scrape time."""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# `pare serve --workers N` (N > 1) sets PROMETHEUS_MULTIPROC_DIR before the workers start: each
# process writes its samples there and /metrics, in whichever process answers, sums them all.
REQUESTS = Counter("pare_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("pare_http_request_duration_seconds", "Time to the response start", ["method", "route"])
JOBS = Gauge("pare_jobs", "Jobs by status", ["status"], multiprocess_mode="mostrecent")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelling", "cancelled")


class MetricsMiddleware:
    """Pure ASGI middleware (safe with streaming responses)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
                REQUESTS.labels(scope["method"], path, str(status["code"])).inc()
            await send(message)

        await self.app(scope, receive, send_wrapper)


def render(job_counts: dict[str, int]) -> tuple[bytes, str]:
    """The exposition text, after refreshing the jobs gauge."""
    for status in STATUSES:
        JOBS.labels(status).set(job_counts.get(status, 0))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
