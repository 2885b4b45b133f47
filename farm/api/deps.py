"""Dependency aliases for routes: the runtime, a DB session, the caller."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from farm.accounts import Principal, authenticate
from farm.api.errors import ApiError
from farm.api.runtime import Runtime
from farm.db.models import Role
from farm.storage import ObjectStore

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
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None:
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
