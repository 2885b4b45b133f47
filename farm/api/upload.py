"""Streaming multipart upload: request body → parser → bounded pipe → store.

The body is never spooled: file bytes go from the socket through a small
queue to the object store's streaming put, which runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import queue
import re
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect, Request

from farm import assets as asset_service
from farm.accounts import Principal
from farm.api.errors import ApiError
from farm.api.runtime import Runtime
from farm.db.models import Project
from farm.workflows import triggers

FILE_FIELD = "file"
_MAX_TEXT_FIELD = 1024


class ChunkPipe:
    """A bounded byte pipe from the event loop to one reading thread."""

    def __init__(self, maxsize: int = 16) -> None:
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize)
        self._pending = memoryview(b"")
        self._eof = False
        self.reader_gone = False

    def offer(self, chunk: bytes) -> bool:
        try:
            self._q.put_nowait(chunk)
        except queue.Full:
            return False
        return True

    def put_blocking(self, item: bytes | BaseException | None) -> None:
        while not self.reader_gone:
            try:
                self._q.put(item, timeout=0.25)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1, /) -> bytes:
        """Short reads are allowed: returns what one queued chunk holds, up to n."""
        if not self._pending:
            if self._eof:
                return b""
            item = self._q.get()
            if item is None:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                raise item
            self._pending = memoryview(item)
        take = len(self._pending) if n < 0 else min(n, len(self._pending))
        out, self._pending = self._pending[:take].tobytes(), self._pending[take:]
        return out


class MultipartStream:
    """Incremental multipart/form-data parser that surfaces the `file` field's bytes."""

    def __init__(self, content_type: str | None) -> None:
        ctype, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise ApiError(415, "send the file as multipart/form-data with a 'file' field")
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.file_done = False
        self._out: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._part: str | None = None
        self._is_file = False
        self._text = b""
        try:
            self._parser = MultipartParser(boundary, callbacks=self._callbacks())
        except ValueError as exc:
            raise ApiError(400, f"bad multipart boundary: {exc}") from None

    def _callbacks(self) -> dict[str, Callable[..., None]]:
        def part_begin() -> None:
            self._headers, self._hname, self._hvalue = {}, b"", b""

        def header_field(data: bytes, start: int, end: int) -> None:
            self._hname += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self._hvalue += data[start:end]

        def header_end() -> None:
            self._headers[self._hname.lower()] = self._hvalue
            self._hname, self._hvalue = b"", b""

        def headers_finished() -> None:
            _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
            self._part = opts.get(b"name", b"").decode("utf-8", "replace")
            self._is_file = self._part == FILE_FIELD
            if self._is_file:
                if self.file_done or self.filename is not None:
                    raise ApiError(400, "send exactly one 'file' field")
                self.filename = opts.get(b"filename", b"").decode("utf-8", "replace")
            self._text = b""

        def part_data(data: bytes, start: int, end: int) -> None:
            if self._is_file:
                self._out.append(bytes(data[start:end]))
            elif len(self._text) < _MAX_TEXT_FIELD:
                self._text += data[start:end]

        def part_end() -> None:
            if self._is_file:
                self.file_done = True
            elif self._part:
                self.fields[self._part] = self._text[:_MAX_TEXT_FIELD].decode("utf-8", "replace")

        return {
            "on_part_begin": part_begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": part_data,
            "on_part_end": part_end,
        }

    def feed(self, chunk: bytes) -> list[bytes]:
        """Parse one body chunk; return the file bytes it contained."""
        try:
            self._parser.write(chunk)
        except ApiError:
            raise
        except Exception as exc:  # python-multipart raises its own parse errors
            raise ApiError(400, f"malformed multipart body: {exc}") from None
        out, self._out = self._out, []
        return out

    def finish(self) -> None:
        try:
            self._parser.finalize()
        except Exception as exc:
            raise ApiError(400, f"malformed multipart body: {exc}") from None


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_name(raw: str | None) -> str:
    """A display name only: keys never derive from it."""
    name = _UNSAFE.sub("_", (raw or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255] or "upload"


async def receive_upload(
    request: Request, rt: Runtime, session: Session, principal: Principal, project: Project
) -> tuple[asset_service.IngestResult, dict[str, str]]:
    """Stream the request's multipart `file` field into an asset; returns it and the text fields.

    Text fields sent before the file (`name`, `purpose`…) are known when the
    asset is named; the file's bytes go straight through to the store.
    """
    limit = rt.settings.storage.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 1024 * 1024:
        raise ApiError(413, f"upload exceeds the limit of {limit} bytes")
    stream = MultipartStream(request.headers.get("content-type"))
    pipe = ChunkPipe()
    task: asyncio.Future[asset_service.IngestResult] | None = None

    def run_ingest() -> asset_service.IngestResult:
        try:
            name = clean_name(stream.fields.get("name") or stream.filename)
            stored = asset_service.store_object(rt.store, project.org_id, project.id, name, pipe, limit=limit)
            return triggers.record_upload(session, rt.store, principal, project, stored)  # a user's upload: triggers fire with it
        finally:
            pipe.reader_gone = True

    try:
        async for chunk in request.stream():
            for piece in stream.feed(chunk):
                if task is None:
                    task = asyncio.ensure_future(run_in_threadpool(run_ingest))
                if not pipe.offer(piece):
                    await run_in_threadpool(pipe.put_blocking, piece)
            if task is not None and task.done():
                break  # the store gave up early (size limit, storage error)
        else:
            stream.finish()
    except (ApiError, ClientDisconnect) as exc:
        if task is not None:
            await run_in_threadpool(pipe.put_blocking, exc if isinstance(exc, ApiError) else ConnectionError("client went away"))
            await asyncio.gather(task, return_exceptions=True)
        raise
    if task is None:
        raise ApiError(422, "file: a non-empty 'file' field is required")
    await run_in_threadpool(pipe.put_blocking, None)
    try:
        result = await task
    except asset_service.UploadTooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except asset_service.EmptyUpload as exc:
        raise ApiError(422, f"file: {exc}") from None
    return result, dict(stream.fields)
