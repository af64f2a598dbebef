"""Streaming multipart upload: one file field written to disk as it arrives, capped in bytes.

Starlette's form parser spools the whole body before the handler runs; this parser stops
reading at the cap, so an oversized or lying upload costs at most `cap` bytes of disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import InvalidRequest, PayloadTooLarge

FORM_OVERHEAD = 64 * 1024  # boundaries and part headers allowed beyond the file cap
MAX_FILENAME = 255  # what most file systems allow for one name


@dataclass
class _Collector:
    dest: BinaryIO
    cap: int
    field_name: str
    filename: str | None = None
    content_type: str | None = None
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    found: bool = False
    _in_target: bool = False
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _hf: bytes = b""
    _hv: bytes = b""

    def on_part_begin(self) -> None:
        self._headers, self._hf, self._hv = {}, b"", b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hf += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hv += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._hf.lower()] = self._hv
        self._hf, self._hv = b"", b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self._in_target = name == self.field_name and not self.found
        if self._in_target:
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            if len(filename) > MAX_FILENAME:
                raise InvalidRequest(
                    f"the file name is longer than {MAX_FILENAME} characters", field=self.field_name
                )
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in filename):
                raise InvalidRequest("the file name contains control characters", field=self.field_name)
            self.filename = filename or "upload"
            media, _ = parse_options_header(self._headers.get(b"content-type", b""))
            self.content_type = media.decode("latin-1").lower() or None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_target:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.cap:
            raise PayloadTooLarge(f"the file is larger than {self.cap} bytes", field=self.field_name)
        self.dest.write(chunk)
        self.digest.update(chunk)

    def on_part_end(self) -> None:
        if self._in_target:
            self.found, self._in_target = True, False


@dataclass(frozen=True)
class Upload:
    filename: str
    size_bytes: int
    sha256: str
    content_type: str | None = None  # the part's own Content-Type, without parameters


async def receive_file(
    *,
    content_type: str | None,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    dest: BinaryIO,
    cap: int,
    field_name: str = "file",
) -> Upload:
    """Parse a multipart body from `stream`, writing field `field_name` to dest; 413 past `cap`."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidRequest("expected multipart/form-data with a file field", field=field_name)
    limit = cap + FORM_OVERHEAD
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"the upload is larger than {cap} bytes", field=field_name)
    collector = _Collector(dest=dest, cap=cap, field_name=field_name)
    callbacks = {name: getattr(collector, name) for name in dir(collector) if name.startswith("on_")}
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the upload is larger than {cap} bytes", field=field_name)
        try:
            parser.write(chunk)
        except MultipartParseError as exc:  # e.g. a part header over the parser's size limit
            raise InvalidRequest(f"malformed multipart body: {exc}", field=field_name) from exc
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}", field=field_name) from exc
    if not collector.found:
        raise InvalidRequest(f"no file in multipart field {field_name!r}", field=field_name)
    dest.flush()
    return Upload(
        collector.filename or "upload", collector.size, collector.digest.hexdigest(), collector.content_type
    )
