"""Deleting what a tenant stores: a dataset, a job's artifacts, and the retention pass.

Order: the storage objects first, then the rows. A crash between the two leaves rows whose objects
are gone (a download answers 404 "missing from storage" and the DELETE, retried, finishes the job);
it never leaves objects that no row names, which nothing would ever find again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.models import TERMINAL, UNFINISHED, Artifact, Dataset, Job, utcnow
from app.errors import Conflict, NotFound
from app.storage import Storage


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
