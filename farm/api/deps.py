"""Dependency aliases for routes: the runtime, a DB session, the caller, and lookups several routers share.

A lookup answers another org's row exactly like a missing one: 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from farm.accounts import Principal, authenticate
from farm.api.errors import ApiError, not_found
from farm.api.runtime import Runtime
from farm.db.models import File, Project, Role
from farm.openai.errors import OpenAIError
from farm.storage import ObjectStore
from farm.ui import sessions as ui_sessions

_bearer = HTTPBearer(auto_error=False, description="A farm API key: sk_farm_…")
ID_PATTERN = r"^[a-z]{2,8}_[0-9a-f]{28}$"  # every public id: prefix, then a time-ordered hex
ID_RE = re.compile(ID_PATTERN)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with rt.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_store(rt: RuntimeDep) -> ObjectStore:
    return rt.store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_principal(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None:
        # A dashboard page's <video> and EventSource cannot send a Bearer header: its session cookie
        # reads (GET/HEAD only); anything that changes state still needs the key or a CSRF-checked /ui form.
        if request.method in ("GET", "HEAD") and (signed_in := ui_sessions.resolve(session, request.cookies.get(ui_sessions.COOKIE))):
            return signed_in[0]
        raise ApiError(401, "missing API key: send 'Authorization: Bearer sk_farm_…'", headers={"WWW-Authenticate": "Bearer"})
    principal = authenticate(session, creds.credentials)
    if principal is None:
        raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return principal


def _require(role: Role):  # type: ignore[no-untyped-def]
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(role):
            raise ApiError(403, f"this action needs the '{role.value}' role; the key has '{principal.role.value}'")
        return principal

    return check


Viewer = Annotated[Principal, Depends(_require(Role.viewer))]
Member = Annotated[Principal, Depends(_require(Role.member))]
Admin = Annotated[Principal, Depends(_require(Role.admin))]


def well_formed(id_: str) -> bool:
    """Malformed ids are simply not found: same answer as any unknown id."""
    return bool(ID_RE.match(id_))


class _OrgRow(Protocol):
    org_id: str


Row = TypeVar("Row", bound=_OrgRow)


def owned(session: Session, principal: Principal, model: type[Row], id_: str) -> Row | None:
    """The caller's org's row with this id, or None: another org's row reads like a missing one."""
    row = session.get(model, id_) if well_formed(id_) else None
    return row if row is not None and row.org_id == principal.org_id else None


def load_project(session: Session, principal: Principal, project_id: str) -> Project:
    project = owned(session, principal, Project, project_id)
    if project is None:
        raise not_found("project")
    return project


def load_file(session: Session, principal: Principal, file_id: str) -> File:
    """An OpenAI file (its 404 in OpenAI's shape: these are the Files and Batches routes' lookups)."""
    f = owned(session, principal, File, file_id)
    if f is None:
        raise OpenAIError(404, "no such file", param="file_id", code="not_found")
    return f


def path_project(project_id: str, principal: Viewer, session: SessionDep) -> Project:
    return load_project(session, principal, project_id)


def path_file(file_id: str, principal: Viewer, session: SessionDep) -> File:
    return load_file(session, principal, file_id)


ProjectDep = Annotated[Project, Depends(path_project)]  # the caller's project named by the path's project_id
FileDep = Annotated[File, Depends(path_file)]  # the caller's file named by the path's file_id
