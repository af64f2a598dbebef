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
# A file part's Content-Type names the format when the file name has no known suffix
MEDIA_TYPES = {
    "text/plain": "txt",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/vnd.apache.parquet": "parquet",
}
SNIFF_BYTES = 256 * 1024


def _text_head(path: Path) -> str:
    """The first bytes as UTF-8, a leading BOM dropped as the worker's reader drops it (a character
    cut at the end is dropped too); 422 if not UTF-8."""
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the file is not UTF-8 text: {exc}", field="file") from exc


def detect_format(path: Path, filename: str, content_type: str | None = None) -> str:
    """txt | jsonl | csv | tsv | parquet, checked on the first bytes only; InvalidRequest otherwise.

    The checks read the head as the worker's reader (workers.data) reads the whole file: JSON
    Lines end at \n only, csv and tsv rows at \n, \r\n or \r, tsv without quoting.
    """
    fmt = FORMATS.get(Path(filename).suffix.lower()) or MEDIA_TYPES.get(content_type or "")
    if fmt is None:
        raise InvalidRequest(
            f"unsupported file type {filename!r} ({content_type or 'no Content-Type'}); name it with one of "
            f"{', '.join(FORMATS)} or give the part a Content-Type of {', '.join(MEDIA_TYPES)}",
            field="file",
        )
    size = path.stat().st_size
    if size == 0:
        raise InvalidRequest("the file is empty", field="file")
    if fmt == "parquet":
        _check_parquet_magic(path, size)
        return fmt
    text = _text_head(path)
    if not text.strip():
        raise InvalidRequest("the file has no text", field="file")
    if fmt == "jsonl":
        _check_jsonl_head(text, cut=size > SNIFF_BYTES)
    elif fmt in ("csv", "tsv"):
        _check_header(text, tsv=fmt == "tsv")
    return fmt


def _check_parquet_magic(path: Path, size: int) -> None:
    if size >= 12:
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(-4, 2)
            tail = fh.read(4)
        if head == b"PAR1" and tail == b"PAR1":
            return
    raise InvalidRequest("not a parquet file (missing PAR1 magic)", field="file")


def _check_jsonl_head(text: str, *, cut: bool) -> None:
    """The first 20 lines are JSON objects; the head's last line is skipped when the file goes on."""
    lines = text.split("\n")
    if cut:
        lines = lines[:-1]
    for number, line in enumerate(lines[:20], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # also an integer over 4300 digits, deep nesting
            raise InvalidRequest(f"line {number} is not JSON: {exc}", field="file") from exc
        if not isinstance(record, dict):
            raise InvalidRequest(f"line {number} is not a JSON object", field="file")


def _check_header(text: str, *, tsv: bool) -> None:
    """The first non-blank row names the columns (at least one cell is not blank)."""
    rows = io.StringIO(text, newline="")
    reader = csv.reader(rows, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(rows)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), [])
    except csv.Error as exc:
        raise InvalidRequest(f"the first row is not {'tsv' if tsv else 'csv'}: {exc}", field="file") from exc
    if not header:
        raise InvalidRequest("the first row must name the columns", field="file")


def safe_filename(filename: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename.replace("\\", "/")).name).strip("._") or "upload"
    return name[:200]


def create_dataset(
    session: Session, *, tenant_id: str, upload: Upload, path: Path, storage: Storage, settings: Settings
) -> Dataset:
    """Validate the uploaded file, store it, and record it (within the tenant's storage quota)."""
    quotas.check_storage(session, tenant_id=tenant_id, settings=settings, adding=upload.size_bytes)
    fmt = detect_format(path, upload.filename, upload.content_type)
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
