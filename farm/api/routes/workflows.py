"""/v1/workflows (saved definitions), /v1/workflow-runs (runs: view, cancel, retry) and /v1/workflow-triggers. HTTP only; logic in farm.workflows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.accounts import Principal
from farm.api.deps import Member, SessionDep, Viewer, load_project, owned
from farm.api.errors import ERROR_RESPONSES, ApiError, not_found
from farm.api.pagination import Cursor, Limit, paginate_map
from farm.api.routes.jobs import spec_context
from farm.api.schemas import Page
from farm.db.models import Job, Workflow, WorkflowTrigger
from farm.jobs.service import IdempotencyConflict, NothingToRetry
from farm.jobs.states import IllegalTransition
from farm.workflows.definition import DefinitionError
from farm.workflows import triggers
from farm.workflows.service import cancel_run, retry_run, run_view, save_workflow, start_run
from kinds.workflow import RUN_KIND

router = APIRouter(tags=["workflows"], responses=ERROR_RESPONSES)
IdempotencyKey = Annotated[str | None, Header(max_length=255, pattern=r"^[\x21-\x7e]+$", description="Same key + same body returns the original run")]
Definition = Annotated[dict[str, Any] | Annotated[str, StringConstraints(max_length=200_000)], Field(
    description="The definition: an object, or its YAML/JSON text (name, params, steps: id, kind, spec, depends_on, retry, timeout_s, continue_on_failure, when)")]
ProjectId = Annotated[str, StringConstraints(max_length=64)]


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: Definition


class WorkflowPublic(BaseModel):
    id: str
    name: str
    description: str
    definition: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, wf: Workflow) -> WorkflowPublic:
        return cls(id=wf.id, name=wf.name, description=wf.description, definition=wf.definition, created_at=wf.created_at)


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: ProjectId
    params: dict[str, Any] = Field(default_factory=dict, description="Parameter values; the definition's defaults fill the rest")
    priority: int = Field(default=50, ge=0, le=100, description="The priority of every step's job")


class AdHocRunCreate(RunCreate):
    definition: Definition


class RetryPublic(BaseModel):
    after_attempt: int = Field(description="The attempt that failed")
    failed_at: datetime
    backoff_s: float | None = Field(description="The wait drawn: min(cap, base·2^(n-1)) ± jitter")
    not_before: datetime = Field(description="The next attempt started no earlier: the backoff")
    reason: str | None


class StepPublic(BaseModel):
    id: str
    kind: str
    state: str = Field(description="pending, running, succeeded, failed, skipped or cancelled")
    attempts: int = Field(description="Child jobs started in this round (the retry policy's count)")
    job_ids: list[str] = Field(description="Every child job of the step, oldest first")
    job_id: str | None = Field(description="The current (last) child job")
    job_state: str | None
    counts: dict[str, int] | None = Field(description="The current child job's items: total, succeeded, failed")
    outputs: dict[str, list[str]] = Field(description="The step's outputs by name: asset ids in item order")
    not_before: datetime | None = Field(description="A retried step waits for its backoff until then")
    retries: list[RetryPublic] = Field(description="Every failed attempt that was retried: when, why, and the backoff")
    reason: str | None
    depends_on: list[str]
    started_at: datetime | None
    finished_at: datetime | None


class RunPublic(BaseModel):
    id: str = Field(description="The run's job id (kind workflow)")
    workflow: str
    workflow_id: str | None
    project_id: str
    state: str
    priority: int
    params: dict[str, Any]
    error: str | None
    done: int = Field(description="Steps that have ended")
    steps: list[StepPublic]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _refused(exc: DefinitionError) -> ApiError:
    return ApiError(422, str(exc))


def load_workflow(session: Session, principal: Principal, workflow_id: str) -> Workflow:
    wf = owned(session, principal, Workflow, workflow_id)
    if wf is None:
        raise not_found("workflow")
    return wf


def load_run(session: Session, principal: Principal, run_id: str) -> Job:
    run = owned(session, principal, Job, run_id)
    if run is None or run.kind != RUN_KIND:
        raise not_found("workflow run")
    return run


@router.post("/v1/workflows", status_code=201, response_model=WorkflowPublic)
def create_workflow(request: Request, body: WorkflowCreate, principal: Member, session: SessionDep) -> WorkflowPublic:
    try:
        wf = save_workflow(session, principal, body.definition, spec_context(request))
    except DefinitionError as exc:
        raise _refused(exc) from None
    return WorkflowPublic.of(wf)


@router.get("/v1/workflows", response_model=Page[WorkflowPublic])
def list_workflows(principal: Viewer, session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> Page[WorkflowPublic]:
    return paginate_map(session, select(Workflow).where(Workflow.org_id == principal.org_id), Workflow.id, WorkflowPublic.of, limit, cursor)


@router.get("/v1/workflows/{workflow_id}", response_model=WorkflowPublic)
def get_workflow(workflow_id: str, principal: Viewer, session: SessionDep) -> WorkflowPublic:
    return WorkflowPublic.of(load_workflow(session, principal, workflow_id))


def _start(request: Request, session: Session, principal: Principal, body: RunCreate, definition: Any, key: str | None, workflow_id: str | None) -> JSONResponse:
    project = load_project(session, principal, body.project_id)
    try:
        run, created = start_run(session, principal, project, definition, body.params, priority=body.priority,
                                 idempotency_key=key, workflow_id=workflow_id, context=spec_context(request))
    except DefinitionError as exc:
        raise _refused(exc) from None
    except IdempotencyConflict as exc:
        raise ApiError(409, str(exc), type="idempotency_conflict") from None
    view = RunPublic.model_validate(run_view(session, run))
    return JSONResponse(view.model_dump(mode="json"), status_code=201 if created else 200)


@router.post("/v1/workflows/{workflow_id}/runs", status_code=201, response_model=RunPublic,
             responses={200: {"model": RunPublic, "description": "replay of an Idempotency-Key"}, 409: ERROR_RESPONSES[422]})
def run_workflow(workflow_id: str, request: Request, body: RunCreate, principal: Member, session: SessionDep,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    wf = load_workflow(session, principal, workflow_id)
    return _start(request, session, principal, body, wf.definition, idempotency_key, wf.id)


@router.post("/v1/workflow-runs", status_code=201, response_model=RunPublic,
             responses={200: {"model": RunPublic, "description": "replay of an Idempotency-Key"}, 409: ERROR_RESPONSES[422]})
def run_definition(request: Request, body: AdHocRunCreate, principal: Member, session: SessionDep,
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return _start(request, session, principal, body, body.definition, idempotency_key, None)


@router.get("/v1/workflow-runs/{run_id}", response_model=RunPublic)
def get_run(run_id: str, principal: Viewer, session: SessionDep) -> RunPublic:
    return RunPublic.model_validate(run_view(session, load_run(session, principal, run_id)))


@router.post("/v1/workflow-runs/{run_id}/cancel", response_model=RunPublic, responses={409: ERROR_RESPONSES[422]})
def cancel(run_id: str, principal: Member, session: SessionDep) -> RunPublic:
    run = load_run(session, principal, run_id)
    try:
        cancel_run(session, principal, run)
    except IllegalTransition as exc:
        raise ApiError(409, str(exc)) from None
    return RunPublic.model_validate(run_view(session, run))


@router.post("/v1/workflow-runs/{run_id}/retry", response_model=RunPublic, responses={409: ERROR_RESPONSES[422]})
def retry(run_id: str, principal: Member, session: SessionDep) -> RunPublic:
    run = load_run(session, principal, run_id)
    try:
        retry_run(session, principal, run)
    except NothingToRetry as exc:
        raise ApiError(409, str(exc)) from None
    return RunPublic.model_validate(run_view(session, run))


class TriggerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["upload", "cron"] = Field(description="upload: a user's upload into the project; cron: a schedule")
    project_id: ProjectId
    content_type: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None, description="upload: the uploads that fire it, exact (video/mp4) or a type's every subtype (video/*)")
    cron: Annotated[str, StringConstraints(max_length=100)] | None = Field(default=None, description="cron: 5 fields, UTC (minute hour day month weekday)")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameter values of every run it starts")
    asset_param: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None, description="upload: the parameter the uploaded asset's id is bound to (a list of one id for a string_list)")


class TriggerPublic(BaseModel):
    id: str
    workflow_id: str
    project_id: str
    type: str
    content_type: str | None
    cron: str | None
    params: dict[str, Any]
    asset_param: str | None
    last_slot: datetime | None = Field(description="cron: the last schedule slot that fired (or the trigger's creation)")
    created_at: datetime

    @classmethod
    def of(cls, t: WorkflowTrigger) -> TriggerPublic:
        return cls(id=t.id, workflow_id=t.workflow_id, project_id=t.project_id, type=t.type, content_type=t.content_type, cron=t.cron,
                   params=t.params.get("values") or {}, asset_param=t.params.get("asset_param"), last_slot=t.last_slot, created_at=t.created_at)


class FirePublic(BaseModel):
    key: str = Field(description="What fired it: the uploaded asset's id, or the schedule slot's time")
    run_id: str | None = Field(description="The run it started (None: the workflow could not start; see the log)")
    created_at: datetime


class TriggerDetail(TriggerPublic):
    fires: list[FirePublic] = Field(description="The most recent fires, newest first")


def load_trigger(session: Session, principal: Principal, trigger_id: str) -> WorkflowTrigger:
    trigger = owned(session, principal, WorkflowTrigger, trigger_id)
    if trigger is None:
        raise not_found("workflow trigger")
    return trigger


@router.post("/v1/workflows/{workflow_id}/triggers", status_code=201, response_model=TriggerPublic)
def create_trigger(workflow_id: str, request: Request, body: TriggerCreate, principal: Member, session: SessionDep) -> TriggerPublic:
    wf = load_workflow(session, principal, workflow_id)
    project = load_project(session, principal, body.project_id)
    try:
        trigger = triggers.create_trigger(session, principal, wf, project, body.type, content_type=body.content_type, cron=body.cron,
                                          params=body.params, asset_param=body.asset_param, context=spec_context(request))
    except DefinitionError as exc:
        raise _refused(exc) from None
    return TriggerPublic.of(trigger)


@router.get("/v1/workflows/{workflow_id}/triggers", response_model=Page[TriggerPublic])
def list_triggers(workflow_id: str, principal: Viewer, session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> Page[TriggerPublic]:
    wf = load_workflow(session, principal, workflow_id)
    stmt = select(WorkflowTrigger).where(WorkflowTrigger.org_id == principal.org_id, WorkflowTrigger.workflow_id == wf.id)
    return paginate_map(session, stmt, WorkflowTrigger.id, TriggerPublic.of, limit, cursor)


@router.get("/v1/workflow-triggers/{trigger_id}", response_model=TriggerDetail)
def get_trigger(trigger_id: str, principal: Viewer, session: SessionDep) -> TriggerDetail:
    trigger = load_trigger(session, principal, trigger_id)
    fires = [FirePublic(key=f.key, run_id=f.run_id, created_at=f.created_at) for f in triggers.fires_of(session, trigger.id)]
    return TriggerDetail(**TriggerPublic.of(trigger).model_dump(), fires=fires)


@router.delete("/v1/workflow-triggers/{trigger_id}", status_code=204)
def delete_trigger(trigger_id: str, principal: Member, session: SessionDep) -> Response:
    triggers.delete_trigger(session, principal, load_trigger(session, principal, trigger_id))
    return Response(status_code=204)
