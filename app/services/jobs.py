"""Jobs: create (after validation), read, list with a cursor, cancel, and their events."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import schemas
from app.db.jobstate import append_event
from app.db.models import TERMINAL, Artifact, Job, JobEvent, utcnow
from app.errors import ArtifactsDeleted, Conflict, NotFound
from app.ids import new_id
from app.services import quotas
from app.services.validation import validate_job_request
from app.settings import Settings


def request_hash(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request body (key order and spacing do not matter)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def to_resource(job: Job) -> schemas.Job:
    """The public representation of a job row."""
    request = schemas.JobRequest.model_validate(job.request)
    error = schemas.JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return schemas.Job(
        id=job.id,
        status=job.status,
        model=request.model,
        method=request.method,
        target=request.target,
        calibration=request.calibration,
        evaluation=request.evaluation,
        webhook=request.webhook,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        resolved=job.resolved,
        progress=schemas.Progress.model_validate(job.progress or {}),
        results=job.results,
        error=error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        artifacts_deleted_at=job.artifacts_deleted_at,
    )


def create_job(
    session: Session,
    *,
    tenant_id: str,
    request: schemas.JobRequest,
    settings: Settings,
    idempotency_key: str | None = None,
) -> Job:
    """Validate the request (the model's config is read now) and insert a queued job."""
    quotas.check_active_jobs(session, tenant_id=tenant_id, settings=settings)
    quotas.check_storage(session, tenant_id=tenant_id, settings=settings)
    resolved = validate_job_request(session, tenant_id=tenant_id, request=request, settings=settings)
    body = request.model_dump(mode="json", exclude_unset=False)
    job = Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status="queued",
        model_id=request.model.id,
        attempt=0,
        max_attempts=settings.max_attempts,
        fence=0,
        event_seq=0,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body),
        request=body,
        resolved=resolved,
        progress={"stage": "queued", "percent": 0.0},
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    session.add(job)
    session.flush()
    append_event(session, job_id=job.id, type="job.queued", data={"model": request.model.id})
    return job


def get_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """A job of this tenant; NotFound for unknown ids and for other tenants' ids alike."""
    job = session.scalars(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)).first()
    if job is None:
        raise NotFound(f"no job {job_id!r}", field="id")
    return job


def list_jobs(
    session: Session,
    *,
    tenant_id: str,
    limit: int,
    after: str | None = None,
    status: str | None = None,
    model: str | None = None,
) -> tuple[list[Job], bool]:
    """Newest first; `after` is the last id of the previous page."""
    stmt = select(Job).where(Job.tenant_id == tenant_id)
    if after:
        stmt = stmt.where(Job.id < after)
    if status:
        stmt = stmt.where(Job.status == status)
    if model:
        stmt = stmt.where(Job.model_id == model)
    rows = list(session.scalars(stmt.order_by(Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def cancel_job(session: Session, *, tenant_id: str, job_id: str) -> tuple[Job, bool]:
    """queued → cancelled at once; running → cancelling (the run stops at its next block boundary).

    Returns the job and whether it reached a terminal state now (so a webhook is due).
    """
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    session.refresh(job, with_for_update=True)
    if job.status in TERMINAL:
        raise Conflict(f"job {job_id} already {job.status}", field="id")
    now = utcnow()
    if job.status == "queued":
        job.status, job.finished_at, job.updated_at = "cancelled", now, now
        job.fence += 1
        session.flush()
        append_event(session, job_id=job.id, type="job.cancelled", data={"status": "cancelled"})
        return job, True
    if job.status == "running":
        job.status, job.updated_at = "cancelling", now
        session.flush()
        append_event(session, job_id=job.id, type="job.cancelling", data={"status": "cancelling"})
    return job, False


def list_events(
    session: Session, *, job_id: str, after: int = 0, limit: int = 1000
) -> tuple[list[JobEvent], bool]:
    """Events with seq > after, oldest first."""
    rows = list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.seq > after)
            .order_by(JobEvent.seq)
            .limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def event_resource(event: JobEvent) -> schemas.JobEvent:
    return schemas.JobEvent(seq=event.seq, type=event.type, created_at=event.created_at, data=event.data)


def _kept(job: Job) -> None:
    if job.artifacts_deleted_at is not None:
        raise ArtifactsDeleted(
            f"the artifacts of {job.id} were deleted at {job.artifacts_deleted_at.isoformat()}",
            field="job_id",
        )


def list_artifacts(session: Session, *, job: Job) -> list[Artifact]:
    """The job's artifacts by name; 404 `artifacts_deleted` once they have been deleted."""
    _kept(job)
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)))


def get_artifact(session: Session, *, job: Job, name: str) -> Artifact:
    _kept(job)
    artifact = session.scalars(
        select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name)
    ).first()
    if artifact is None:
        raise NotFound(f"no artifact {name!r}", field="name")
    return artifact


def count_by_status(session: Session) -> dict[str, int]:
    """Jobs per status, all tenants (for /metrics)."""
    from sqlalchemy import func

    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: int(n) for status, n in rows}
