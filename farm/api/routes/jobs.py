"""/v1/jobs: submit, list, inspect, cancel, retry, and follow a job's events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from farm.accounts import Principal
from farm.api.deps import ID_PATTERN, Member, RuntimeDep, SessionDep, Viewer, load_project, owned
from farm.api.errors import ERROR_RESPONSES, ApiError, not_found
from farm.api.pagination import Cursor, Limit, paginate_map
from farm.api.schemas import JobCreate, JobDetail, JobKindPublic, JobPublic, JobRetry, KindOutputPublic, Page
from farm.db.models import Job, JobEvent
from farm.jobs.outputs import outputs_of
from farm.jobs.service import IdempotencyConflict, NothingToRetry, request_cancel, retry, submit
from farm.jobs.states import IllegalTransition, JobState
from kinds import KindInfo, UnknownKind, all_kinds

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)
StateFilter = Annotated[JobState | None, Query(description="Only jobs in this state")]


def load_job(session: Session, principal: Principal, job_id: str) -> Job:
    job = owned(session, principal, Job, job_id)
    if job is None:
        raise not_found("job")
    return job


def visible_job(job_id: str, principal: Viewer, session: SessionDep) -> Job:
    """As a dependency, so a streaming route answers 404 before it starts streaming."""
    return load_job(session, principal, job_id)


@router.get("/v1/job-kinds", response_model=list[JobKindPublic])
def list_kinds(_: Viewer) -> list[JobKindPublic]:
    return [kind_public(k) for k in all_kinds().values()]


def kind_public(kind: KindInfo) -> JobKindPublic:
    outputs = [KindOutputPublic(name=name, type=o.type, per_item=o.per_item, description=o.description) for name, o in kind.outputs.items()]
    return JobKindPublic(kind=kind.name, description=kind.description, spec_schema=kind.spec.model_json_schema(), outputs=outputs)


@router.post("/v1/jobs", status_code=201, response_model=JobPublic, responses={200: {"model": JobPublic, "description": "replay of an Idempotency-Key"}, 409: ERROR_RESPONSES[422]})
def create_job(
    request: Request,
    body: JobCreate,
    principal: Member,
    session: SessionDep,
    rt: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(max_length=255, pattern=r"^[\x21-\x7e]+$", description="Same key + same body returns the original job")] = None,
) -> JSONResponse:
    project = load_project(session, principal, body.project_id)
    try:
        job, created = submit(session, principal, project, body.kind, body.spec, body.priority, idempotency_key,
                              rt.settings.dispatch.max_attempts, spec_context=spec_context(request))
    except UnknownKind as exc:
        raise ApiError(422, f"kind: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in ("spec", *err["loc"]))
        raise ApiError(422, f"{field}: {err['msg']}") from None
    except IdempotencyConflict as exc:
        raise ApiError(409, str(exc), type="idempotency_conflict") from None
    return JSONResponse(JobPublic.of(job).model_dump(mode="json"), status_code=201 if created else 200)


def spec_context(request: Request) -> dict[str, Any] | None:
    """The served models' names and kinds, so a spec naming an unknown model is a 422 at submit (None: unreadable registry)."""
    generation = getattr(request.app.state, "generation", None)
    if generation is None:
        return None
    try:
        registry = generation.registry()
    except Exception:  # an unreadable registry must not stop other kinds' jobs; the runner reports it
        return None
    return {"models": {name: spec.kind for name, spec in registry.models.items()}}


@router.get("/v1/jobs", response_model=Page[JobPublic])
def list_jobs(
    principal: Viewer,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    state: StateFilter = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_.]+$")] = None,
    project_id: Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN)] = None,
) -> Page[JobPublic]:
    stmt = select(Job).where(Job.org_id == principal.org_id)
    if state:
        stmt = stmt.where(Job.state == state.value)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if project_id:
        stmt = stmt.where(Job.project_id == project_id)
    return paginate_map(session, stmt, Job.id, JobPublic.of, limit, cursor)


@router.get("/v1/jobs/{job_id}", response_model=JobDetail)
def get_job(job_id: str, principal: Viewer, session: SessionDep) -> JobDetail:
    job = load_job(session, principal, job_id)
    return JobDetail.with_outputs(job, outputs_of(session, job.id))


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobPublic, responses={409: ERROR_RESPONSES[422]})
def cancel_job(job_id: str, principal: Member, session: SessionDep) -> JobPublic:
    job = load_job(session, principal, job_id)
    try:
        request_cancel(session, principal, job)
    except IllegalTransition as exc:
        raise ApiError(409, str(exc)) from None
    return JobPublic.of(job)


@router.post("/v1/jobs/{job_id}/retry", response_model=JobPublic, responses={409: ERROR_RESPONSES[422]})
def retry_job(job_id: str, principal: Member, session: SessionDep, body: JobRetry | None = None) -> JobPublic:
    job = load_job(session, principal, job_id)
    try:
        retry(session, principal, job, (body or JobRetry()).scope)
    except NothingToRetry as exc:
        raise ApiError(409, str(exc)) from None
    return JobPublic.of(job)


@router.get("/v1/jobs/{job_id}/events", response_class=EventSourceResponse, responses={200: {"description": "text/event-stream of job events until the job ends"}})
async def job_events(
    job: Annotated[Job, Depends(visible_job)],
    rt: RuntimeDep,
    request: Request,
    after: Annotated[int, Query(ge=0, description="Only events after this sequence number")] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^\d+$")] = None,
) -> AsyncIterator[ServerSentEvent]:
    job_id = job.id
    seq = max(after, int(last_event_id or 0))
    if (request_session := object_session(job)) is not None:
        # the stream outlives the request's session: give its pooled connection back before streaming
        await run_in_threadpool(request_session.commit)

    def fetch(since: int) -> tuple[list[JobEvent], str]:
        with rt.db.session() as s:
            events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > since).order_by(JobEvent.seq).limit(500)))
            state = s.scalar(select(Job.state).where(Job.id == job_id)) or JobState.failed.value
            return events, state

    while not await request.is_disconnected():
        events, state = await run_in_threadpool(fetch, seq)
        for ev in events:
            seq = ev.seq
            yield ServerSentEvent(event=ev.type, id=str(ev.seq), data={"seq": ev.seq, "type": ev.type, "at": ev.created_at.isoformat(), **ev.data})
        if not events and JobState(state).terminal:
            return
        if not events:
            await asyncio.sleep(0.25)
