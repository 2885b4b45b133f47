"""Assets: streamed upload into a project, listing, metadata, download, delete."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import assets as asset_service
from farm.accounts import Principal
from farm.api.deps import Member, ProjectDep, RuntimeDep, SessionDep, StoreDep, Viewer, owned
from farm.api.errors import ERROR_RESPONSES, ApiError, not_found
from farm.api.pagination import Cursor, Limit, paginate
from farm.api.schemas import AssetPublic, Page
from farm.api.upload import receive_upload
from farm.db.models import Asset

router = APIRouter(tags=["assets"], responses=ERROR_RESPONSES)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "maxLength": 255, "description": "Display name; defaults to the file name"},
                    },
                }
            }
        },
    }
}


def load_asset(session: Session, principal: Principal, asset_id: str) -> Asset:
    asset = owned(session, principal, Asset, asset_id)
    if asset is None:
        raise not_found("asset")
    return asset


@router.post(
    "/v1/projects/{project_id}/assets",
    status_code=201,
    response_model=AssetPublic,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"model": AssetPublic, "description": "identical content already in the project"}, 413: ERROR_RESPONSES[422], 415: ERROR_RESPONSES[422]},
)
async def upload_asset(request: Request, principal: Member, project: ProjectDep, rt: RuntimeDep, session: SessionDep) -> JSONResponse:
    result, _ = await receive_upload(request, rt, session, principal, project)
    if result.created:
        request.app.state.metrics.upload_bytes.inc(result.asset.size)
    body = AssetPublic.model_validate(result.asset).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if result.created else 200)


@router.get("/v1/projects/{project_id}/assets", response_model=Page[AssetPublic])
def list_assets(
    principal: Viewer,
    project: ProjectDep,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    kind: Literal["video", "image", "audio", "text", "document", "other"] | None = None,
    content_type: Annotated[str | None, Query(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")] = None,
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$", description="Name contains (case-insensitive)")] = None,
) -> Page[AssetPublic]:
    stmt = select(Asset).where(Asset.org_id == principal.org_id, Asset.project_id == project.id)
    if kind:
        stmt = stmt.where(Asset.kind == kind)
    if content_type:
        stmt = stmt.where(Asset.content_type == content_type)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Asset.name.ilike(f"%{escaped}%", escape="\\"))
    return paginate(session, stmt, Asset.id, AssetPublic, limit, cursor)


@router.get("/v1/assets/{asset_id}", response_model=AssetPublic)
def get_asset(asset_id: str, principal: Viewer, session: SessionDep) -> Asset:
    return load_asset(session, principal, asset_id)


def content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@router.get(
    "/v1/assets/{asset_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "partial content"}, 307: {"description": "presigned URL"}, 416: ERROR_RESPONSES[422]},
)
def download_asset(
    asset_id: str,
    principal: Viewer,
    session: SessionDep,
    store: StoreDep,
    rt: RuntimeDep,
    redirect: bool = False,
    range_: Annotated[str | None, Header(alias="range", max_length=100)] = None,
) -> Response:
    asset = load_asset(session, principal, asset_id)
    if redirect:
        expiry = timedelta(seconds=rt.settings.storage.presign_expiry_s)
        url = store.presigned_get_url(asset.object_key, expiry, download_name=asset.name)
        return RedirectResponse(url, status_code=307)
    headers = {
        "Content-Disposition": content_disposition(asset.name),
        "ETag": f'"{asset.sha256}"',
        "Accept-Ranges": "bytes",
    }
    start, length, status = 0, asset.size, 200
    if range_:
        span = _parse_range(range_, asset.size)
        if span is None:
            raise ApiError(416, f"unsatisfiable range {range_!r} for {asset.size} bytes", headers={"Content-Range": f"bytes */{asset.size}"})
        start, length, status = span[0], span[1] - span[0] + 1, 206
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{asset.size}"
    headers["Content-Length"] = str(length)
    body = store.get(asset.object_key, offset=start, length=length) if length else iter(())
    return StreamingResponse(body, status_code=status, media_type=asset.content_type, headers=headers)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    m = _RANGE.match(header.strip())
    if not m or not (m[1] or m[2]) or size == 0:
        return None
    if not m[1]:
        suffix = int(m[2])
        return (max(0, size - suffix), size - 1) if suffix else None
    first = int(m[1])
    last = min(int(m[2]), size - 1) if m[2] else size - 1
    return (first, last) if first <= last else None


@router.delete("/v1/assets/{asset_id}", status_code=204)
def delete_asset(asset_id: str, principal: Member, session: SessionDep, store: StoreDep) -> Response:
    asset = load_asset(session, principal, asset_id)
    asset_service.delete(session, store, principal, asset)
    return Response(status_code=204)
