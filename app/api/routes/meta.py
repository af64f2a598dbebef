"""Estimates, capabilities, health, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from app import schemas
from app.api import metrics
from app.api.deps import DbDep, DispatcherDep, SettingsDep, TenantDep
from app.api.problems import problem
from app.services import jobs, validation
from core import archs
from core import methods as catalogue

router = APIRouter()


@router.post(
    "/v1/estimates",
    tags=["estimates"],
    responses={401: {"model": schemas.Problem}, 422: {"model": schemas.Problem}},
)
async def estimate(body: schemas.EstimateRequest, tenant: TenantDep, settings: SettingsDep) -> dict[str, Any]:
    """Dry run from the model's config: baseline MACs and parameters, planned widths; nothing compressed."""
    del tenant
    # reads the config: I/O
    return await run_in_threadpool(validation.estimate, request=body, model_root=settings.model_root)


@router.get("/v1/capabilities", tags=["meta"])
async def capabilities(settings: SettingsDep) -> dict[str, Any]:
    """What this service can do: methods, model types, evaluation tasks, limits."""
    return {
        "object": "capabilities",
        "methods": [info.describe() for info in catalogue.entries()],
        "model_types": list(archs.SUPPORTED_MODEL_TYPES),
        "evaluation_tasks": list(schemas.EVAL_TASKS),
        "dataset_formats": ["txt", "jsonl", "csv", "tsv", "parquet"],
        "limits": {
            "mac_ratio": {"exclusive_minimum": 0.0, "maximum": 1.0},
            "max_upload_bytes": settings.max_upload_bytes,
            "max_num_samples": settings.max_num_samples,
            "max_seq_length": settings.max_seq_length,
            "max_attempts": settings.max_attempts,
        },
    }


@router.get("/healthz", tags=["meta"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["meta"], responses={503: {"model": schemas.Problem}})
async def readyz(db: DbDep, dispatcher: DispatcherDep) -> Any:
    """Readiness: the database and the broker answer."""
    try:
        await db.read(lambda s: s.execute(text("SELECT 1")))
        database = True
    except Exception:  # noqa: BLE001 - any failure means not ready
        database = False
    broker = await run_in_threadpool(dispatcher.ping)
    if database and broker:
        return {"status": "ready", "database": "ok", "broker": "ok"}
    down = [name for name, ok in (("database", database), ("broker", broker)) if not ok]
    return problem(503, "not_ready", "Not ready", f"unreachable: {', '.join(down)}")


@router.get("/metrics", tags=["meta"], response_class=Response)
async def prometheus(db: DbDep) -> Response:
    """Prometheus exposition: request counts and latency, jobs by status."""
    try:
        counts = await db.read(jobs.count_by_status)
    except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
        counts = {}
    body, content_type = metrics.render(counts)
    return Response(body, media_type=content_type)
