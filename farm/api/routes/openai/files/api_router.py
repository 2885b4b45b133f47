"""/v1/files: OpenAI's Files API over the farm's assets (purpose `batch` for batch input)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from farm.api.deps import FileDep, Member, RuntimeDep, SessionDep, StoreDep, Viewer, load_project
from farm.api.pagination import AfterId
from farm.api.routes.openai.deps import ProjectHeader, default_project
from farm.api.routes.openai.errors import ERROR_RESPONSES
from farm.api.routes.openai.route import OpenAIRoute
from farm.api.upload import receive_upload
from farm.batches import files as file_service
from farm.db.models import Asset, File
from farm.openai.errors import OpenAIError
from farm.openai.files import FileDeleted, FileList, FileObject, Purpose

router = APIRouter(tags=["files"], route_class=OpenAIRoute, responses=ERROR_RESPONSES)
BATCH_PROJECT = "batches"

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file", "purpose"],
            "properties": {"purpose": {"type": "string", "enum": list(file_service.PURPOSES)}, "file": {"type": "string", "format": "binary"}},
        }}},
    }
}


def file_object(f: File) -> FileObject:
    return FileObject(id=f.id, bytes=f.bytes, created_at=int(f.created_at.timestamp()), filename=f.filename, purpose=f.purpose)


@router.post("/v1/files", response_model=FileObject, openapi_extra=UPLOAD_BODY)
async def create_file(request: Request, principal: Member, rt: RuntimeDep, session: SessionDep, project_id: ProjectHeader = None) -> FileObject:
    """Upload a file (streamed; send `purpose` before `file`). Stored as an asset of the
    `X-Farm-Project` project, or of the org's `batches` project."""
    if project_id:
        project = await run_in_threadpool(load_project, session, principal, project_id)
    else:
        project = await run_in_threadpool(default_project, rt.db, principal, BATCH_PROJECT)
    result, fields = await receive_upload(request, rt, session, principal, project)
    purpose = fields.get("purpose")
    if purpose not in file_service.PURPOSES:
        raise OpenAIError(400, f"purpose must be one of {', '.join(file_service.PURPOSES)}, sent before the file", param="purpose")

    def attach() -> File:
        asset = session.get(Asset, result.asset.id)
        assert asset is not None
        f = file_service.attach(session, principal, asset, result.asset.name, purpose)
        session.commit()
        return f

    return file_object(await run_in_threadpool(attach))


@router.get("/v1/files", response_model=FileList)
def list_files(
    principal: Viewer,
    session: SessionDep,
    purpose: Annotated[Purpose | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    after: AfterId = None,
) -> FileList:
    stmt = select(File).where(File.org_id == principal.org_id)
    if purpose:
        stmt = stmt.where(File.purpose == purpose)
    if after:
        stmt = stmt.where(File.id < after)
    rows = list(session.scalars(stmt.order_by(File.id.desc()).limit(limit + 1)))
    data = [file_object(f) for f in rows[:limit]]
    return FileList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=len(rows) > limit)


@router.get("/v1/files/{file_id}", response_model=FileObject)
def get_file(f: FileDep) -> FileObject:
    return file_object(f)


@router.get("/v1/files/{file_id}/content", response_class=StreamingResponse, responses={200: {"content": {"application/octet-stream": {}}}})
def file_content(f: FileDep, session: SessionDep, store: StoreDep) -> StreamingResponse:
    asset = session.get(Asset, f.asset_id)
    assert asset is not None
    return StreamingResponse(store.get(asset.object_key), media_type="application/octet-stream",
                             headers={"Content-Length": str(asset.size)})


@router.delete("/v1/files/{file_id}", response_model=FileDeleted)
def delete_file(principal: Member, f: FileDep, session: SessionDep, store: StoreDep) -> FileDeleted:
    file_id = f.id
    orphan = file_service.delete(session, principal, f)
    key = None
    if orphan:
        asset = session.get(Asset, orphan)
        if asset is not None:
            key = asset.object_key
            session.delete(asset)
    session.commit()
    if key:
        store.delete(key)
    return FileDeleted(id=file_id)
