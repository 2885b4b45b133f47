"""/v1/projects: a tenant's containers for assets and jobs."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from farm import audit
from farm.api.deps import Member, ProjectDep, SessionDep, Viewer
from farm.api.errors import ERROR_RESPONSES, ApiError
from farm.api.pagination import Cursor, Limit, paginate
from farm.api.schemas import Page, ProjectCreate, ProjectPublic, ProjectUpdate
from farm.db.models import Project
from farm.ids import new_id

router = APIRouter(prefix="/v1/projects", tags=["projects"], responses=ERROR_RESPONSES)


def _conflict(name: str) -> ApiError:
    return ApiError(409, f"a project named '{name}' already exists")


@router.post("", status_code=201, response_model=ProjectPublic, responses={409: ERROR_RESPONSES[422]})
def create_project(body: ProjectCreate, principal: Member, session: SessionDep) -> Project:
    project = Project(id=new_id("proj"), org_id=principal.org_id, name=body.name, description=body.description)
    session.add(project)
    audit.record(session, principal, "project.create", "project", project.id, name=body.name)
    try:
        session.commit()
    except IntegrityError:
        raise _conflict(body.name) from None
    return project


@router.get("", response_model=Page[ProjectPublic])
def list_projects(principal: Viewer, session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> Page[ProjectPublic]:
    stmt = select(Project).where(Project.org_id == principal.org_id)
    return paginate(session, stmt, Project.id, ProjectPublic, limit, cursor)


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project: ProjectDep) -> Project:
    return project


@router.patch("/{project_id}", response_model=ProjectPublic, responses={409: ERROR_RESPONSES[422]})
def update_project(body: ProjectUpdate, principal: Member, project: ProjectDep, session: SessionDep) -> Project:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(project, field, value)
    audit.record(session, principal, "project.update", "project", project.id, fields=sorted(changes))
    try:
        session.commit()
    except IntegrityError:
        raise _conflict(str(changes.get("name"))) from None
    return project


@router.delete("/{project_id}", status_code=204)
def delete_project(principal: Member, project: ProjectDep, session: SessionDep) -> Response:
    from farm.db.models import Asset

    if session.scalars(select(Asset.id).where(Asset.project_id == project.id).limit(1)).first():
        raise ApiError(409, "the project still has assets; delete them first")
    session.delete(project)
    audit.record(session, principal, "project.delete", "project", project.id, name=project.name)
    session.commit()
    return Response(status_code=204)
