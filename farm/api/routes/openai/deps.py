"""Dependencies of the OpenAI-compatible routes: the caller (key, rate limit, project).

The project a request is billed to, and that stores its images, is named by
the ``X-Farm-Project`` header (a project id of the caller's org); another
org's project is a 404, like a missing one. Without the header, usage has no
project and images asked for as ``url`` go to the org's default project
(``FARM_SERVE__DEFAULT_PROJECT``, created on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from farm import audit
from farm.accounts import Principal, authenticate
from farm.api.deps import load_project
from farm.api.routes.openai.errors import retry_after
from farm.api.routes.openai.keycache import KeyCache
from farm.api.routes.openai.state import Generation
from farm.api.runtime import Runtime
from farm.db import Database
from farm.db.models import Project, Role
from farm.ids import new_id
from farm.openai.errors import OpenAIError

PROJECT_HEADER = "X-Farm-Project"

# The same scheme as the rest of the API (farm.api.deps), resolved here without
# FastAPI's per-dependency thread hops: these routes are on the latency budget.
_bearer = HTTPBearer(auto_error=False, description="A farm API key: sk_farm_…")


async def get_generation(request: Request) -> Generation:
    return request.app.state.generation


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


GenerationDep = Annotated[Generation, Depends(get_generation)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _authenticate(db: Database, key: str) -> Principal | None:
    with db.session() as session:
        return authenticate(session, key)


def _principal(role: Role):  # type: ignore[no-untyped-def]
    async def check(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        headers = {"WWW-Authenticate": "Bearer"}
        if creds is None:
            raise OpenAIError(401, "missing API key: send 'Authorization: Bearer sk_farm_…'", headers=headers)
        keys: KeyCache = request.app.state.generation.keys
        principal = keys.get(creds.credentials)
        if principal is None:
            principal = await run_in_threadpool(_authenticate, request.app.state.runtime.db, creds.credentials)
            if principal is None:
                raise OpenAIError(401, "invalid or revoked API key", headers=headers)
            keys.put(creds.credentials, principal)
        if not principal.can(role):
            raise OpenAIError(403, f"this action needs the '{role.value}' role; the key has '{principal.role.value}'")
        return principal

    return check


Member = Annotated[Principal, Depends(_principal(Role.member))]
Viewer = Annotated[Principal, Depends(_principal(Role.viewer))]


@dataclass(frozen=True)
class Caller:
    principal: Principal
    project_id: str | None


def _limit(request: Request, gen: Generation, principal: Principal) -> None:
    decision = gen.limiter.check(principal.key_id)
    request.state.ratelimit = decision
    if not decision.allowed:
        raise OpenAIError(
            429,
            f"rate limit reached for this API key ({gen.limiter.burst} requests at once, {gen.limiter.rate:g}/s sustained); "
            f"retry in {decision.retry_after_header}s",
            headers=retry_after(decision.retry_after_s),
        )


async def _project(rt: RuntimeDep, principal: Principal, project_id: str | None) -> str | None:
    if project_id is None:
        return None

    def check() -> str:
        with rt.db.session() as session:
            return load_project(session, principal, project_id).id

    return await run_in_threadpool(check)


ProjectHeader = Annotated[
    str | None,
    Header(
        alias=PROJECT_HEADER,
        max_length=64,
        description="Project (id) to bill this request to and store its images in; default: none / the org's default project",
    ),
]


async def generating_caller(request: Request, principal: Member, gen: GenerationDep, rt: RuntimeDep, project: ProjectHeader = None) -> Caller:
    """A member key under its rate limit, with its project checked."""
    _limit(request, gen, principal)
    return Caller(principal, await _project(rt, principal, project))


async def reading_caller(request: Request, principal: Viewer, gen: GenerationDep) -> Principal:
    """Any key of the org, under its rate limit."""
    _limit(request, gen, principal)
    return principal


GeneratingCaller = Annotated[Caller, Depends(generating_caller)]
ReadingCaller = Annotated[Principal, Depends(reading_caller)]


def default_project(db: Database, principal: Principal, name: str) -> Project:
    """The org's project for generated images, created on first use (runs in a worker thread)."""
    with db.session() as session:
        found = session.scalars(select(Project).where(Project.org_id == principal.org_id, Project.name == name)).one_or_none()
        if found is not None:
            return found
        project = Project(id=new_id("proj"), org_id=principal.org_id, name=name, description="Images generated through /v1/images")
        session.add(project)
        audit.record(session, principal, "project.create", "project", project.id, name=name)
        try:
            session.commit()
        except IntegrityError:  # another request created it first
            session.rollback()
            return session.scalars(select(Project).where(Project.org_id == principal.org_id, Project.name == name)).one()
        return project
