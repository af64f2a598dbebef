"""/v1/jobs: submit (idempotent), list, show, cancel."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy import update
from sqlalchemy.orm import Session

from app import schemas
from app.api.deps import (
    DbDep,
    DispatcherDep,
    JobCacheDep,
    JobIdPath,
    SessionsDep,
    SettingsDep,
    TenantDep,
)
from app.db.models import Job, utcnow
from app.ids import JOB_ID_PATTERN
from app.queue import Dispatcher
from app.services import idempotency, jobs, retention, webhooks

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.Problem, "description": "Missing or invalid API key"},
    404: {"model": schemas.Problem, "description": "No such job for this tenant"},
    422: {"model": schemas.Problem, "description": "Invalid request (names the field)"},
}


def _publish(*, dispatcher: Dispatcher, session: Session, job_id: str) -> None:
    """Hand the job to the workers; if the broker is down the reaper publishes it later."""
    try:
        dispatcher.publish(job_id)
    except Exception:  # noqa: BLE001 - the job stays queued and is re-published
        log.warning("could not publish %s; the reaper will retry", job_id, exc_info=True)
        session.execute(update(Job).where(Job.id == job_id).values(published_at=None))
        session.commit()


@router.post(
    "",
    status_code=202,
    response_model=schemas.Job,
    responses={**PROBLEMS, 409: {"model": schemas.Problem, "description": "Same Idempotency-Key in flight"}},
)
async def submit_job(
    body: schemas.JobRequest,
    tenant: TenantDep,
    db: DbDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> JSONResponse:
    """Validate and queue a compression job; 202 with Location. Honours Idempotency-Key."""
    body_hash = jobs.request_hash(body.model_dump(mode="json", exclude_unset=True))

    def submit(session: Session) -> JSONResponse:
        if idempotency_key:
            replay = idempotency.claim_key(
                sessions, tenant_id=tenant.id, key=idempotency_key, body_hash=body_hash
            )
            if replay is not None:
                headers = {"Location": f"/v1/jobs/{replay.job_id}", "Idempotent-Replayed": "true"}
                return JSONResponse(replay.body, status_code=replay.status_code, headers=headers)
        try:
            job = jobs.create_job(
                session, tenant_id=tenant.id, request=body, settings=settings, idempotency_key=idempotency_key
            )
            job.published_at = utcnow()
            session.commit()
        except BaseException:
            session.rollback()
            if idempotency_key:
                idempotency.release_key(sessions, tenant_id=tenant.id, key=idempotency_key)
            raise
        resource = jobs.to_resource(job).model_dump(mode="json")
        if idempotency_key:
            idempotency.complete_key(
                sessions,
                tenant_id=tenant.id,
                key=idempotency_key,
                status_code=202,
                body=resource,
                job_id=job.id,
            )
        _publish(dispatcher=dispatcher, session=session, job_id=job.id)
        return JSONResponse(resource, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    return await db.write(submit)


@router.get("", response_model=schemas.JobList, responses=PROBLEMS)
async def list_jobs(
    tenant: TenantDep,
    db: DbDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        str | None,
        Query(pattern=JOB_ID_PATTERN, max_length=28, description="The last id of the previous page."),
    ] = None,
    status: Annotated[schemas.JobStatus | None, Query()] = None,
    model: Annotated[
        str | None, Query(min_length=1, max_length=200, pattern=schemas.PRINTABLE_PATTERN)
    ] = None,
) -> schemas.JobList:
    """This tenant's jobs, newest first, with cursor pagination."""

    def page(session: Session) -> schemas.JobList:
        rows, has_more = jobs.list_jobs(
            session,
            tenant_id=tenant.id,
            limit=min(limit, settings.max_jobs_page),
            after=after,
            status=status,
            model=model,
        )
        return schemas.JobList(data=[jobs.to_resource(j) for j in rows], has_more=has_more)

    return await db.read(page)


@router.get(
    "/{job_id}",
    response_model=schemas.Job,
    responses={**PROBLEMS, 304: {"description": "Unchanged since the ETag sent in If-None-Match"}},
)
async def get_job(
    job_id: JobIdPath,
    tenant: TenantDep,
    db: DbDep,
    cache: JobCacheDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """One job: status, progress, results, error. At most PARE_JOB_CACHE_SECONDS (1 s) old; ETag and
    If-None-Match let pollers skip unchanged bodies."""

    def render(session: Session) -> bytes:
        job = jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        return jobs.to_resource(job).model_dump_json().encode()

    async def load() -> tuple[bytes, str]:
        body = await db.read(render)
        return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    body, etag = await cache.fetch((tenant.id, job_id), load)
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={int(cache.ttl)}"}
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.post(
    "/{job_id}/cancel",
    response_model=schemas.Job,
    responses={**PROBLEMS, 409: {"model": schemas.Problem, "description": "Already finished"}},
)
async def cancel_job(
    job_id: JobIdPath, tenant: TenantDep, db: DbDep, settings: SettingsDep, cache: JobCacheDep
) -> schemas.Job:
    """Queued jobs are cancelled at once; running ones become `cancelling` until the next block boundary."""

    def cancel(session: Session) -> schemas.Job:
        job, terminal = jobs.cancel_job(session, tenant_id=tenant.id, job_id=job_id)
        session.commit()
        cache.evict((tenant.id, job_id))
        if terminal:
            webhooks.schedule(settings=settings, job_id=job.id)
            retention.sweep_objects_of(settings, [job.id])  # what a killed earlier run stored
        return jobs.to_resource(job)

    return await db.write(cancel)
