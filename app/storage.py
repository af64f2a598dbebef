"""Object storage for datasets and artifacts: a local directory or an S3-compatible bucket.

Writes are atomic (a local object is written under a temporary name, fsynced, then renamed; an
S3 object exists only once its upload completed) and every object's sha256 is recorded by the
caller and verified on read, so a torn or flipped object is never served as if it were whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from app.settings import Settings

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


class CorruptObject(Exception):
    """A stored object's bytes no longer match the sha256 recorded when it was written."""


class MissingObject(Exception):
    """No object under this key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


def file_sha256(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a local file."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def check_key(key: str) -> str:
    """Refuse keys that could escape the storage root."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or any(p in ("..", ".", "") for p in parts) or "\\" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    def put_file(self, key: str, src: Path) -> StoredObject:
        """Store a local file under key, atomically."""
        ...

    def open_verified(self, key: str, sha256: str) -> AbstractContextManager[Path]:
        """A local path holding the object, after checking its sha256 (CorruptObject otherwise)."""
        ...

    def local_copy(self, key: str, sha256: str) -> tuple[Path, Callable[[], None]]:
        """A verified local file for serving, and the callable that cleans it up afterwards."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Keys of the stored objects under `prefix` (a folder-like key ending in /), sorted."""
        ...


class LocalStorage:
    """Objects as files under `root`; a temp name, fsync and rename make each write atomic."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, src: Path) -> StoredObject:
        """Copy src to key via a temporary file in the same directory, fsync, rename, fsync the dir."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return StoredObject(key, size, digest.hexdigest())

    @contextmanager
    def open_verified(self, key: str, sha256: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise MissingObject(key)
        _, actual = file_sha256(path)
        if actual != sha256:
            log.error("corrupt object %s: sha256 %s, recorded %s", key, actual, sha256)
            raise CorruptObject(key)
        yield path

    def local_copy(self, key: str, sha256: str) -> tuple[Path, Callable[[], None]]:
        with self.open_verified(key, sha256) as path:
            return path, lambda: None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")  # a put_file in flight
        )


class S3Storage:
    """Objects in an S3-compatible bucket (AWS, MinIO, moto); credentials from the AWS_* variables."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, region: str) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, src: Path) -> StoredObject:
        """Upload (multipart for large files); the object appears only when the upload completes."""
        size, sha = file_sha256(src)
        self.client.upload_file(
            str(src), self.bucket, self._key(key), ExtraArgs={"Metadata": {"sha256": sha}}
        )
        return StoredObject(key, size, sha)

    def local_copy(self, key: str, sha256: str) -> tuple[Path, Callable[[], None]]:
        from botocore.exceptions import ClientError

        fd, tmp = tempfile.mkstemp(prefix="pare-s3-", suffix=PurePosixPath(key).suffix)
        os.close(fd)
        path = Path(tmp)
        try:
            self.client.download_file(self.bucket, self._key(key), tmp)
        except ClientError as exc:
            path.unlink(missing_ok=True)
            raise MissingObject(key) from exc
        if file_sha256(path)[1] != sha256:
            path.unlink(missing_ok=True)
            log.error("corrupt object s3://%s/%s", self.bucket, self._key(key))
            raise CorruptObject(key)
        return path, lambda: path.unlink(missing_ok=True)

    @contextmanager
    def open_verified(self, key: str, sha256: str) -> Iterator[Path]:
        path, cleanup = self.local_copy(key, sha256)
        try:
            yield path
        finally:
            cleanup()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list_keys(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        return sorted(keys)


def make_storage(settings: Settings) -> Storage:
    """The storage named by PARE_STORAGE_URL: a directory, or s3://bucket/prefix."""
    url = settings.storage_url
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Storage(bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
    return LocalStorage(Path(url.removeprefix("file://")))


def copy_to(storage: Storage, *, key: str, sha256: str, dest: Path) -> Path:
    """Copy a verified object to a local file (workers fetch datasets this way)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with storage.open_verified(key, sha256) as path:
        shutil.copyfile(path, dest)
    return dest
