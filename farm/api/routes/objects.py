"""/v1/objects: presigned URLs of the embedded local object store.

S3 serves its own presigned URLs; the local directory has no server, so the
control plane answers them, checking the HMAC signature instead of a key.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from farm.api.deps import StoreDep
from farm.api.errors import ApiError
from farm.api.upload import ChunkPipe
from farm.storage import ObjectNotFound

router = APIRouter(prefix="/v1/objects", tags=["objects"], include_in_schema=False)


def _verify(store: object, key: str, method: str, expires: int, signature: str, filename: str | None = None) -> None:
    verify = getattr(store, "verify_presigned", None)
    if verify is None or not verify(key, method, expires, signature, download_name=filename):
        raise ApiError(403, "invalid or expired signature")


@router.get("/{key:path}")
def get_object(key: str, store: StoreDep, expires: int = Query(), signature: str = Query(max_length=128), filename: str | None = Query(None, max_length=255)) -> Response:
    _verify(store, key, "GET", expires, signature, filename)
    try:
        info = store.stat(key)
    except ObjectNotFound:
        raise ApiError(404, "object not found") from None
    headers = {"Content-Length": str(info.size)}
    if filename:
        from farm.api.routes.assets import content_disposition

        headers["Content-Disposition"] = content_disposition(filename)
    return StreamingResponse(store.get(key), media_type=info.content_type, headers=headers)


@router.put("/{key:path}", status_code=200)
async def put_object(key: str, request: Request, store: StoreDep, expires: int = Query(), signature: str = Query(max_length=128)) -> Response:
    _verify(store, key, "PUT", expires, signature)
    pipe = ChunkPipe()
    ctype = request.headers.get("content-type", "application/octet-stream")
    def put() -> None:
        try:
            store.put(key, pipe, content_type=ctype)
        finally:
            pipe.reader_gone = True

    task = asyncio.ensure_future(run_in_threadpool(put))
    async for chunk in request.stream():
        if chunk and not pipe.offer(chunk):
            await run_in_threadpool(pipe.put_blocking, chunk)
    await run_in_threadpool(pipe.put_blocking, None)
    await task
    return Response(status_code=200)
