"""/v1/datasets: multipart upload (field `file`), capped while streaming."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from sqlalchemy.orm import Session

from app import schemas
from app.api.deps import DbDep, SettingsDep, StorageDep, TenantDep
from app.ids import DATASET_ID_PATTERN
from app.services import datasets, retention
from app.services.uploads import receive_file

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=schemas.DatasetOut,
    openapi_extra=UPLOAD_SCHEMA,
    responses={
        401: {"model": schemas.Problem},
        413: {"model": schemas.Problem, "description": "Larger than PARE_MAX_UPLOAD_BYTES"},
        422: {"model": schemas.Problem, "description": "Not a supported text format"},
    },
)
async def upload_dataset(
    request: Request, tenant: TenantDep, db: DbDep, settings: SettingsDep, storage: StorageDep
) -> schemas.DatasetOut:
    """Upload calibration or evaluation data (.txt, .jsonl, .csv, .tsv, .parquet); returns its id."""
    spool = Path(settings.work_dir) / "uploads"
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, prefix="upload-") as tmp:
        upload = await receive_file(
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            stream=request.stream(),
            dest=tmp,  # type: ignore[arg-type]
            cap=settings.max_upload_bytes,
        )

        def store(session: Session) -> schemas.DatasetOut:
            dataset = datasets.create_dataset(
                session, tenant_id=tenant.id, upload=upload, path=Path(tmp.name), storage=storage,
                settings=settings,
            )
            session.commit()
            return schemas.DatasetOut.model_validate(dataset, from_attributes=True)

        return await db.write(store)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses={
        401: {"model": schemas.Problem},
        404: {"model": schemas.Problem, "description": "No such dataset for this tenant"},
        409: {"model": schemas.Problem, "description": "An unfinished job reads it"},
        422: {"model": schemas.Problem},
    },
)
async def delete_dataset(
    dataset_id: Annotated[str, PathParam(pattern=DATASET_ID_PATTERN, max_length=27)],
    tenant: TenantDep,
    db: DbDep,
    storage: StorageDep,
) -> Response:
    """Delete an uploaded dataset (its stored file and its record)."""
    await db.write(
        lambda session: retention.delete_dataset(
            session, tenant_id=tenant.id, dataset_id=dataset_id, storage=storage
        )
    )
    return Response(status_code=204)
