"""/v1/batches: OpenAI's Batch API; each batch is a farm job (`batch.chat` / `batch.images`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.accounts import Principal
from farm.api.deps import Member, RuntimeDep, SessionDep, Viewer, load_file, owned
from farm.api.pagination import AfterId
from farm.api.routes.openai.batches.serving import view
from farm.api.routes.openai.errors import ERROR_RESPONSES
from farm.api.routes.openai.route import OpenAIRoute
from farm.batches import service
from farm.db.models import Batch, Job, Project
from farm.jobs.service import request_cancel
from farm.jobs.states import IllegalTransition
from farm.openai.batches import BatchCreate, BatchList, BatchObject
from farm.openai.errors import OpenAIError

router = APIRouter(tags=["batches"], route_class=OpenAIRoute, responses=ERROR_RESPONSES)


def load_batch(session: Session, principal: Principal, batch_id: str) -> tuple[Batch, Job]:
    batch = owned(session, principal, Batch, batch_id)
    if batch is None:
        raise OpenAIError(404, "no such batch", param="batch_id", code="not_found")
    job = session.get(Job, batch.job_id)
    assert job is not None
    return batch, job


@router.post("/v1/batches", response_model=BatchObject)
def create_batch(body: BatchCreate, principal: Member, session: SessionDep, rt: RuntimeDep) -> BatchObject:
    f = load_file(session, principal, body.input_file_id)
    project = session.get(Project, f.project_id)
    assert project is not None
    try:
        batch, job = service.create(session, principal, f, project, body.endpoint, body.completion_window, body.metadata,
                                    rt.settings.dispatch.max_attempts, rt.settings.batch)
    except service.BatchRequestError as exc:
        raise OpenAIError(400, str(exc), param=exc.param) from None
    return view(session, batch, job)


@router.get("/v1/batches", response_model=BatchList)
def list_batches(
    principal: Viewer,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: AfterId = None,
) -> BatchList:
    stmt = select(Batch).where(Batch.org_id == principal.org_id)
    if after:
        stmt = stmt.where(Batch.id < after)
    rows = list(session.scalars(stmt.order_by(Batch.id.desc()).limit(limit + 1)))
    data = []
    for batch in rows[:limit]:
        job = session.get(Job, batch.job_id)
        assert job is not None
        data.append(view(session, batch, job))
    return BatchList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=len(rows) > limit)


@router.get("/v1/batches/{batch_id}", response_model=BatchObject)
def get_batch(batch_id: str, principal: Viewer, session: SessionDep) -> BatchObject:
    batch, job = load_batch(session, principal, batch_id)
    return view(session, batch, job)


@router.post("/v1/batches/{batch_id}/cancel", response_model=BatchObject)
def cancel_batch(batch_id: str, principal: Member, session: SessionDep) -> BatchObject:
    batch, job = load_batch(session, principal, batch_id)
    try:
        request_cancel(session, principal, job)
    except IllegalTransition as exc:
        raise OpenAIError(409, f"the batch cannot be cancelled: {exc}", code="batch_not_cancellable") from None
    return view(session, batch, job)
