"""/v1/jobs/{id}/artifacts: the list, and each file streamed with Range support and ETag = sha256."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app import schemas
from app.api.deps import DbDep, StorageDep, TenantDep
from app.api.routes.jobs import PROBLEMS
from app.db.models import Artifact
from app.errors import CorruptArtifact, NotFound
from app.services import jobs
from app.storage import CorruptObject, MissingObject

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts", response_model=list[schemas.ArtifactOut], responses=PROBLEMS)
async def list_artifacts(job_id: str, tenant: TenantDep, db: DbDep) -> list[schemas.ArtifactOut]:
    """Files of a succeeded job (a JSON array) with their sizes, sha256 and download URLs."""

    def listing(session: Session) -> list[schemas.ArtifactOut]:
        jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        return [
            schemas.ArtifactOut(
                name=a.name,
                size_bytes=a.size_bytes,
                sha256=a.sha256,
                content_type=a.content_type,
                download_url=f"/v1/jobs/{job_id}/artifacts/{quote(a.name)}",
            )
            for a in jobs.list_artifacts(session, job_id=job_id)
        ]

    return await db.read(listing)


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    responses={**PROBLEMS, 206: {"description": "Partial content"}, 500: {"model": schemas.Problem}},
)
async def download_artifact(
    job_id: str, name: str, request: Request, tenant: TenantDep, db: DbDep, storage: StorageDep
) -> Response:
    """The file's bytes, checked against the recorded sha256 before the first byte is sent."""

    def find(session: Session) -> Artifact:
        jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
        return jobs.get_artifact(session, job_id=job_id, name=name)

    artifact = await db.read(find)
    etag = f'"{artifact.sha256}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
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
