"""The job state machine in SQL: claims, leases, fenced writes, the reaper, append-only events.

Every transition is one conditional UPDATE (compare-and-set), so a duplicate delivery, two
reapers or a frozen worker that wakes up after its lease expired change nothing: `fence` grows
on every claim and every re-queue, and a run's writes carry the fence it claimed with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import ACTIVE, Job, JobEvent, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: str
    fence: int
    attempt: int


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    republish: list[str] = field(default_factory=list)


def append_event(
    session: Session, *, job_id: str, type: str, data: dict[str, Any] | None = None, fence: int | None = None
) -> int | None:
    """Append an event (seq from jobs.event_seq under the row lock); None when the fence is stale."""
    stmt = update(Job).where(Job.id == job_id)
    if fence is not None:
        stmt = stmt.where(Job.fence == fence, Job.status.in_(ACTIVE))
    seq = session.execute(stmt.values(event_seq=Job.event_seq + 1).returning(Job.event_seq)).scalar()
    if seq is None:
        return None
    session.add(JobEvent(job_id=job_id, seq=seq, type=type, data=data or {}, created_at=utcnow()))
    return int(seq)


def claim_job(session: Session, *, job_id: str, owner: str, lease_seconds: float) -> Claim | None:
    """queued → running with attempt+1, a lease and a new fence; None if someone else has it."""
    now = utcnow()
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            attempt=Job.attempt + 1,
            fence=Job.fence + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            heartbeat_at=now,
            started_at=now,
            updated_at=now,
        )
        .returning(Job.fence, Job.attempt)
    ).one_or_none()
    if row is None:
        return None
    claim = Claim(job_id, int(row.fence), int(row.attempt))
    append_event(session, job_id=job_id, type="job.running", data={"attempt": claim.attempt, "worker": owner})
    return claim


def heartbeat(session: Session, *, claim: Claim, lease_seconds: float) -> bool:
    """Extend the lease; False when the run lost it (re-queued, finished, or fenced out)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.fence == claim.fence, Job.status.in_(ACTIVE))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now)
        .returning(Job.id)
    ).scalar()
    return result is not None


def job_state(session: Session, *, job_id: str) -> tuple[str, int] | None:
    """(status, fence) of a job."""
    row = session.execute(select(Job.status, Job.fence).where(Job.id == job_id)).one_or_none()
    return (row.status, int(row.fence)) if row else None


def record_progress(
    session: Session, *, claim: Claim, progress: dict[str, Any], event: dict[str, Any] | None
) -> bool:
    """Write progress (and an optional progress event) if the run still holds the job."""
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.fence == claim.fence, Job.status.in_(ACTIVE))
        .values(progress=progress, updated_at=utcnow())
        .returning(Job.id)
    ).scalar()
    if result is None:
        return False
    if event is not None:
        append_event(session, job_id=claim.job_id, type="progress", data=event, fence=claim.fence)
    return True


def finish_job(
    session: Session,
    *,
    claim: Claim,
    status: str,
    results: dict[str, Any] | None = None,
    resolved: dict[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    progress: dict[str, Any] | None = None,
    from_statuses: tuple[str, ...] = ACTIVE,
) -> bool:
    """running|cancelling → a terminal status, only with the current fence; False if fenced out.

    A success passes from_statuses=("running",): a cancel requested before the last write wins.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status, "finished_at": now, "updated_at": now, "lease_owner": None}
    if results is not None:
        values["results"] = results
    if resolved is not None:
        values["resolved"] = resolved
    if progress is not None:
        values["progress"] = progress
    if error is not None:
        values["error_code"], values["error_message"] = error
    done = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.fence == claim.fence, Job.status.in_(from_statuses))
        .values(**values)
        .returning(Job.id)
    ).scalar()
    if done is None:
        return False
    data = {"status": status} | ({"error": {"code": error[0], "message": error[1]}} if error else {})
    append_event(session, job_id=claim.job_id, type=f"job.{status}", data=data)
    return True


def _transition(session: Session, job: Job, now: datetime, **values: Any) -> bool:
    """Compare-and-set on (status, fence) as read by the reaper; bumps the fence."""
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.fence == job.fence, Job.status == job.status)
        .values(fence=Job.fence + 1, updated_at=now, lease_owner=None, **values)
        .returning(Job.id)
    ).scalar()
    return done is not None


def reap(session: Session, *, republish_after_seconds: float, limit: int = 100) -> ReapReport:
    """Re-queue or fail runs whose lease expired; list queued jobs the broker may have lost."""
    now = utcnow()
    report = ReapReport()
    expired = session.scalars(
        select(Job).where(Job.status.in_(ACTIVE), Job.lease_expires_at < now).limit(limit)
    ).all()
    for job in expired:
        if job.status == "cancelling":
            if _transition(session, job, now, status="cancelled", finished_at=now):
                append_event(session, job_id=job.id, type="job.cancelled", data={"status": "cancelled"})
                report.cancelled.append(job.id)
        elif job.attempt >= job.max_attempts:
            message = f"the worker stopped heartbeating on each of {job.attempt} attempts"
            if _transition(
                session,
                job,
                now,
                status="failed",
                finished_at=now,
                error_code="worker_lost",
                error_message=message,
            ):
                error = {"code": "worker_lost", "message": message}
                append_event(
                    session, job_id=job.id, type="job.failed", data={"status": "failed", "error": error}
                )
                report.failed.append(job.id)
        elif _transition(session, job, now, status="queued", lease_expires_at=None, published_at=now):
            append_event(
                session,
                job_id=job.id,
                type="job.requeued",
                data={"reason": "lease_expired", "attempt": job.attempt},
            )
            report.requeued.append(job.id)
    stale = now - timedelta(seconds=republish_after_seconds)
    lost = session.execute(
        update(Job)
        .where(Job.status == "queued", (Job.published_at.is_(None)) | (Job.published_at < stale))
        .values(published_at=now)
        .returning(Job.id)
    ).scalars()
    report.republish.extend(lost)
    return report
