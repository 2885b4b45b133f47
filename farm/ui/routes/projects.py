"""Projects and their assets: browse, search by name, upload (XHR, CSRF in a header), preview, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from farm.api.deps import RuntimeDep, SessionDep, owned
from farm.api.errors import ApiError
from farm.api.pagination import Cursor, paginate_map
from farm.api.upload import receive_upload
from farm.db.models import Asset, Project
from farm.ids import new_id
from farm.ui.auth import MemberFormDep, UiUserDep
from farm.ui.web import PageError, not_found, redirect, render

router = APIRouter()
PAGE_SIZE = 48


def _rows(row: object) -> object:
    """Templates read the ORM rows themselves."""
    return row


@router.get("/projects")
def projects_page(request: Request, user: UiUserDep, session: SessionDep, cursor: Cursor = None) -> Response:
    stmt = select(Project).where(Project.org_id == user.principal.org_id)
    page = paginate_map(session, stmt, Project.id, _rows, 100, cursor)
    return render(request, "projects.html", projects=page.data, next_cursor=page.next_cursor)


@router.post("/projects")
def create_project(request: Request, user: MemberFormDep, session: SessionDep, name: Annotated[str, Form(min_length=1, max_length=100)]) -> Response:
    project = Project(id=new_id("proj"), org_id=user.principal.org_id, name=name.strip())
    session.add(project)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise PageError(409, f"A project named {name!r} already exists.") from None
    return redirect(f"/ui/projects/{project.id}")


def _project(session: SessionDep, user: UiUserDep, project_id: str) -> Project:
    project = owned(session, user.principal, Project, project_id)
    if project is None:
        raise not_found()
    return project


@router.get("/projects/{project_id}")
def project_page(
    request: Request,
    project_id: str,
    user: UiUserDep,
    session: SessionDep,
    cursor: Cursor = None,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    project = _project(session, user, project_id)
    stmt = select(Asset).where(Asset.org_id == user.principal.org_id, Asset.project_id == project.id)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Asset.name.ilike(f"%{escaped}%", escape="\\"))
    page = paginate_map(session, stmt, Asset.id, _rows, PAGE_SIZE, cursor)
    return render(request, "project.html", project=project, assets=page.data, next_cursor=page.next_cursor, q=q)


@router.post("/projects/{project_id}/assets")
async def upload(request: Request, project_id: str, user: MemberFormDep, session: SessionDep, rt: RuntimeDep) -> JSONResponse:
    """The page's XHR upload: the same streaming path as the API's upload, authorized by session + CSRF header."""
    project = _project(session, user, project_id)  # type: ignore[arg-type]
    try:
        result, _ = await receive_upload(request, rt, session, user.principal, project)
    except ApiError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({"id": result.asset.id, "name": result.asset.name, "created": result.created},
                        status_code=201 if result.created else 200)


@router.get("/assets/{asset_id}")
def asset_page(request: Request, asset_id: str, user: UiUserDep, session: SessionDep) -> Response:
    asset = owned(session, user.principal, Asset, asset_id)
    if asset is None:
        raise not_found()
    project = session.get(Project, asset.project_id)
    return render(request, "asset.html", asset=asset, project=project)
