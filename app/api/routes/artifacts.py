"""/v1/jobs/{id}/artifacts: the list, and each file streamed with Range support and ETag = sha256."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app import schemas
from app.api.deps import ArtifactNamePath, DbDep, JobCacheDep, JobIdPath, StorageDep, TenantDep
from app.api.routes.jobs import PROBLEMS
from app.db.models import Artifact, Job
from app.errors import CorruptArtifact, NotFound, RangeNotSatisfiable
from app.services import jobs, retention
from app.storage import CorruptObject, MissingObject
from core import targets

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts", response_model=list[schemas.ArtifactOut], responses=PROBLEMS)
async def list_artifacts(
    job_id: JobIdPath,
    tenant: TenantDep,
    db: DbDep,
    target: Annotated[
        float | None,
        Query(gt=0, le=1, description="A sweep's target: only its files (named mac-<ratio>/...)"),
    ] = None,
) -> list[schemas.ArtifactOut]:
    """Files of a succeeded job (a JSON array) with their sizes, sha256 and download URLs. A sweep
    stores each target's model under its own folder, `mac-0.7/config.json`; `?target=0.7` lists one."""

    def listing(session: Session) -> list[schemas.ArtifactOut]:
        job = jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        found = jobs.list_artifacts(session, job=job)
        if target is not None:
            found = _of_target(job, found, target)
        return [
            schemas.ArtifactOut(
                name=a.name,
                size_bytes=a.size_bytes,
                sha256=a.sha256,
                content_type=a.content_type,
                download_url=f"/v1/jobs/{job_id}/artifacts/{quote(a.name)}",
            )
            for a in found
        ]

    return await db.read(listing)


def _of_target(job: Job, found: list[Artifact], target: float) -> list[Artifact]:
    """The artifacts of one target of a sweep; 404 naming the job's targets for any other."""
    ratios = ((job.request or {}).get("target") or {}).get("mac_ratios") or []
    if not any(targets.label(r) == targets.label(target) for r in ratios):
        listed = ", ".join(f"{r:g}" for r in ratios) or "none: the job is not a sweep"
        raise NotFound(f"job {job.id} has no target {target:g} (its targets: {listed})", field="target")
    prefix = targets.label(target) + "/"
    return [a for a in found if a.name.startswith(prefix)]


@router.delete(
    "/{job_id}/artifacts",
    status_code=204,
    responses={**PROBLEMS, 409: {"model": schemas.Problem, "description": "The job has not finished"}},
)
async def delete_artifacts(
    job_id: JobIdPath, tenant: TenantDep, db: DbDep, storage: StorageDep, cache: JobCacheDep
) -> Response:
    """Delete every artifact of a finished job (the stored files, then their records)."""

    def remove(session: Session) -> None:
        job = jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        retention.delete_artifacts(session, job=job, storage=storage)
        cache.evict((tenant.id, job_id))

    await db.write(remove)
    return Response(status_code=204)


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    responses={
        **PROBLEMS,
        206: {"description": "Partial content"},
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        409: {"model": schemas.Problem, "description": "artifact_corrupt: the stored file fails its sha256"},
        416: {"model": schemas.Problem, "description": "Range not satisfiable"},
    },
)
async def download_artifact(
    job_id: JobIdPath,
    name: ArtifactNamePath,
    request: Request,
    tenant: TenantDep,
    db: DbDep,
    storage: StorageDep,
) -> Response:
    """The file's bytes, checked against the recorded sha256 before the first byte is sent."""

    def find(session: Session) -> Artifact:
        job = jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        return jobs.get_artifact(session, job=job, name=name)

    artifact = await db.read(find)
    etag = f'"{artifact.sha256}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    _check_range(request, artifact.size_bytes)
    try:
        # hashing (and, from object storage, fetching) the file takes a while: not in the event loop
        path, cleanup = await run_in_threadpool(storage.local_copy, artifact.storage_key, artifact.sha256)
    except CorruptObject as exc:
        raise CorruptArtifact(
            f"{name} does not match its recorded sha256; refusing to serve it", field="name"
        ) from exc
    except MissingObject as exc:
        raise NotFound(f"{name} is missing from storage", field="name") from exc
    return FileResponse(
        path,
        media_type=artifact.content_type,
        filename=name.rsplit("/", 1)[-1],
        headers={"ETag": etag, "X-Checksum-Sha256": artifact.sha256},
        background=BackgroundTask(cleanup),
    )


def _check_range(request: Request, size: int) -> None:
    """RFC 9110 §14.2: a Range header that does not parse (e.g. bytes=5-2) is ignored and the whole
    file is served; a valid one that no byte of the file satisfies is 416 with `bytes */size`."""
    value = request.headers.get("range")
    if value is None:
        return
    unit, _, spec = value.partition("=")
    ranges: list[tuple[str, str]] = []
    valid = unit.strip().lower() == "bytes" and bool(spec.strip())
    for part in spec.split(",") if valid else []:
        first, dash, last = (x.strip() for x in part.strip().partition("-"))
        numeric = all(x == "" or (x.isascii() and x.isdigit()) for x in (first, last))
        if not dash or not numeric or not (first or last) or (first and last and int(last) < int(first)):
            valid = False
            break
        ranges.append((first, last))
    if not valid:
        request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"range"]
        return
    if all((int(first) >= size) if first else (int(last) == 0 or size == 0) for first, last in ranges):
        raise RangeNotSatisfiable(
            f"no byte of the {size}-byte file is in {value!r}", field="Range",
            headers={"Content-Range": f"bytes */{size}"},
        )
