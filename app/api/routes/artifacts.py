"""/v1/jobs/{id}/artifacts: the list, and each file streamed with Range support and ETag = sha256."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from app import schemas
from app.api.deps import SessionDep, StorageDep, TenantDep
from app.api.routes.jobs import PROBLEMS
from app.errors import CorruptArtifact, NotFound
from app.services import jobs
from app.storage import CorruptObject, MissingObject

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts", response_model=list[schemas.ArtifactOut], responses=PROBLEMS)
def list_artifacts(job_id: str, tenant: TenantDep, session: SessionDep) -> list[schemas.ArtifactOut]:
    """Files of a succeeded job (a JSON array) with their sizes, sha256 and download URLs."""
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


@router.get(
    "/{job_id}/artifacts/{name:path}",
    response_class=FileResponse,
    responses={**PROBLEMS, 206: {"description": "Partial content"}, 500: {"model": schemas.Problem}},
)
def download_artifact(
    job_id: str, name: str, request: Request, tenant: TenantDep, session: SessionDep, storage: StorageDep
) -> Response:
    """The file's bytes, checked against the recorded sha256 before the first byte is sent."""
    jobs.get_job(session, tenant_id=tenant.id, job_id=job_id)
    artifact = jobs.get_artifact(session, job_id=job_id, name=name)
    session.close()
    etag = f'"{artifact.sha256}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    try:
        path, cleanup = storage.local_copy(artifact.storage_key, artifact.sha256)
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
