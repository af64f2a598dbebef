"""Uploaded datasets: format checked cheaply, stored in artifact storage, one row each."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from pathlib import Path

from sqlalchemy.orm import Session

from app.db.models import Dataset, utcnow
from app.errors import InvalidRequest
from app.ids import new_id
from app.services import quotas
from app.services.uploads import Upload
from app.settings import Settings
from app.storage import Storage

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
SNIFF_BYTES = 256 * 1024


def _text_head(path: Path) -> str:
    """The first bytes as UTF-8 (a character cut at the end is dropped); 422 if not UTF-8."""
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the file is not UTF-8 text: {exc}", field="file") from exc


def detect_format(path: Path, filename: str) -> str:
    """txt | jsonl | csv | tsv | parquet, checked on the first bytes only; InvalidRequest otherwise."""
    fmt = FORMATS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise InvalidRequest(
            f"unsupported file type {filename!r}; use one of {', '.join(FORMATS)}", field="file"
        )
    size = path.stat().st_size
    if size == 0:
        raise InvalidRequest("the file is empty", field="file")
    if fmt == "parquet":
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(-4, 2)
            tail = fh.read(4)
        if size < 12 or head != b"PAR1" or tail != b"PAR1":
            raise InvalidRequest("not a parquet file (missing PAR1 magic)", field="file")
        return fmt
    text = _text_head(path)
    lines = text.splitlines()
    if len(text) >= SNIFF_BYTES - 4 and lines:
        lines = lines[:-1]  # the last line may be cut
    if not any(line.strip() for line in lines):
        raise InvalidRequest("the file has no text", field="file")
    if fmt == "jsonl":
        for number, line in enumerate(lines[:20], start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"line {number} is not JSON: {exc}", field="file") from exc
            if not isinstance(record, dict):
                raise InvalidRequest(f"line {number} is not a JSON object", field="file")
    elif fmt in ("csv", "tsv"):
        header = next(csv.reader(io.StringIO(lines[0]), delimiter="\t" if fmt == "tsv" else ","), [])
        if not [c for c in header if c.strip()]:
            raise InvalidRequest("the first line must name the columns", field="file")
    return fmt


def safe_filename(filename: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename.replace("\\", "/")).name).strip("._") or "upload"
    return name[:200]


def create_dataset(
    session: Session, *, tenant_id: str, upload: Upload, path: Path, storage: Storage, settings: Settings
) -> Dataset:
    """Validate the uploaded file, store it, and record it (within the tenant's storage quota)."""
    quotas.check_storage(session, tenant_id=tenant_id, settings=settings, adding=upload.size_bytes)
    fmt = detect_format(path, upload.filename)
    dataset_id = new_id("ds")
    key = f"datasets/{tenant_id}/{dataset_id}/{safe_filename(upload.filename)}"
    stored = storage.put_file(key, path)
    dataset = Dataset(
        id=dataset_id,
        tenant_id=tenant_id,
        filename=upload.filename[:500],
        storage_key=key,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        format=fmt,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset
