"""Deleting what a tenant stores: a dataset, a job's artifacts, and the retention pass.

Order: the storage objects first, then the rows. A crash between the two leaves rows whose objects
are gone (a download answers 404 "missing from storage" and the DELETE, retried, finishes the job);
it never leaves objects that no row names, which nothing would ever find again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.engine import session_scope
from app.db.models import TERMINAL, UNFINISHED, Artifact, Dataset, Job, utcnow
from app.errors import Conflict, NotFound
from app.settings import Settings
from app.storage import Storage, make_storage

log = logging.getLogger(__name__)


def delete_dataset(session: Session, *, tenant_id: str, dataset_id: str, storage: Storage) -> None:
    """Remove a dataset of this tenant (404 for others'); 409 while an unfinished job reads it."""
    dataset = session.scalars(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    ).first()
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}", field="dataset_id")
    unfinished = session.scalars(
        select(Job).where(Job.tenant_id == tenant_id, Job.status.in_(UNFINISHED))
    ).all()
    readers = [j.id for j in unfinished if _reads(j, dataset_id)]
    if readers:
        raise Conflict(f"dataset {dataset_id} is used by unfinished job(s) {', '.join(readers[:5])}",
                       field="dataset_id")
    storage.delete(dataset.storage_key)
    session.execute(delete(Dataset).where(Dataset.id == dataset.id))
    session.commit()


def _reads(job: Job, dataset_id: str) -> bool:
    request = job.request or {}
    refs = [(request.get("calibration") or {}).get("dataset")]
    refs += [t.get("dataset") for t in request.get("evaluation") or [] if isinstance(t, dict)]
    return dataset_id in refs


def delete_artifacts(session: Session, *, job: Job, storage: Storage) -> int:
    """Remove every artifact of a finished job; returns how many. 409 while the job can still run."""
    if job.status not in TERMINAL:
        raise Conflict(f"job {job.id} is {job.status}; cancel it or wait until it ends", field="job_id")
    artifacts = session.scalars(select(Artifact).where(Artifact.job_id == job.id)).all()
    for artifact in artifacts:
        storage.delete(artifact.storage_key)
    session.execute(delete(Artifact).where(Artifact.job_id == job.id))
    job.artifacts_deleted_at = job.artifacts_deleted_at or utcnow()
    session.commit()
    return len(artifacts)


def expire(session: Session, *, storage: Storage, older_than_days: float) -> dict[str, int]:
    """The retention pass: datasets no unfinished job reads and artifacts of finished jobs, created
    more than `older_than_days` ago, are deleted (objects, then rows)."""
    if older_than_days <= 0:
        return {"datasets": 0, "artifacts": 0}
    cutoff = utcnow() - timedelta(days=older_than_days)
    artifacts = session.scalars(
        select(Artifact).join(Job, Job.id == Artifact.job_id)
        .where(Artifact.created_at < cutoff, Job.status.in_(TERMINAL))
    ).all()
    for artifact in artifacts:
        storage.delete(artifact.storage_key)
    if artifacts:
        session.execute(delete(Artifact).where(Artifact.id.in_([a.id for a in artifacts])))
        session.execute(
            update(Job).where(Job.id.in_({a.job_id for a in artifacts})).values(artifacts_deleted_at=utcnow())
        )
    open_jobs = session.scalars(select(Job).where(Job.status.in_(UNFINISHED))).all()
    datasets = [
        d for d in session.scalars(select(Dataset).where(Dataset.created_at < cutoff)).all()
        if not any(_reads(j, d.id) for j in open_jobs)
    ]
    for dataset in datasets:
        storage.delete(dataset.storage_key)
    if datasets:
        session.execute(delete(Dataset).where(Dataset.id.in_([d.id for d in datasets])))
    session.commit()
    return {"datasets": len(datasets), "artifacts": len(artifacts)}


def sweep_job_objects(session: Session, *, storage: Storage, job_id: str) -> list[str]:
    """Delete the objects under jobs/<job_id>/ that no artifact row names and no run can still
    record: those of an earlier fence (a run killed mid-upload, never to commit), and every one
    of a terminal job. Returns the keys deleted.

    The keys are listed before the rows are read: an object stored meanwhile belongs to a run
    whose fence is the row's (kept); the success commit writes the status and the artifact rows
    together, so a terminal status read here comes with its rows.
    """
    keys = storage.list_keys(f"jobs/{job_id}/")
    if not keys:
        return []
    job = session.get(Job, job_id, populate_existing=True)
    recorded = set(session.scalars(select(Artifact.storage_key).where(Artifact.job_id == job_id)))
    stale = []
    for key in keys:
        fence = key.split("/")[2]
        if key in recorded:
            continue
        if job is None or job.status in TERMINAL or (fence.isdigit() and int(fence) < job.fence):
            storage.delete(key)
            stale.append(key)
    return stale


def sweep_objects_of(settings: Settings, job_ids: Iterable[str]) -> list[str]:
    """sweep_job_objects for each job, best effort: storage or database trouble is logged, and the
    next run, cancel or reaper pass that reaches the job sweeps again."""
    deleted: list[str] = []
    storage = make_storage(settings)
    for job_id in job_ids:
        try:
            with session_scope(settings.database_url) as session:
                deleted += sweep_job_objects(session, storage=storage, job_id=job_id)
        except Exception:  # noqa: BLE001 - a sweep never fails what triggered it
            log.warning("could not sweep the stored objects of %s", job_id, exc_info=True)
    if deleted:
        log.info("deleted %d stored objects no run can record: %s", len(deleted), deleted[:5])
    return deleted
