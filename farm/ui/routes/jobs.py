"""Jobs: the filtered, paged list with live states; one job's page; submit, cancel and retry from forms."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import load_only

from farm.api.deps import ID_PATTERN, RuntimeDep, SessionDep, owned, well_formed
from farm.api.pagination import Cursor, paginate_map
from farm.api.routes.jobs import spec_context
from farm.db.models import Asset, Job, JobEvent, Project, WorkflowStep
from farm.jobs.outputs import outputs_of
from farm.jobs.service import IdempotencyConflict, NothingToRetry, failed_items, request_cancel, retry, submit
from farm.jobs.states import IllegalTransition, JobState
from farm.ui.auth import MemberFormDep, UiUserDep
from farm.ui.web import PageError, not_found, redirect, render
from kinds import UnknownKind, all_kinds

router = APIRouter()
PAGE_SIZE = 50
# what a row of the list shows: loading only these keeps a page's cost flat (no spec JSON to parse)
LIST_COLUMNS = (Job.id, Job.kind, Job.state, Job.total, Job.succeeded, Job.failed, Job.created_at)
EVENTS_SHOWN = 200


def live(job: Job) -> dict[str, Any]:
    """What the pages update in place: state and counts."""
    return {"state": job.state, "total": job.total, "succeeded": job.succeeded, "failed": job.failed,
            "terminal": JobState(job.state).terminal}


def _projects(session: SessionDep, org_id: str) -> list[Project]:
    return list(session.scalars(select(Project).where(Project.org_id == org_id).order_by(Project.name).limit(500)))


@router.get("/jobs")
def jobs_page(
    request: Request,
    user: UiUserDep,
    session: SessionDep,
    cursor: Cursor = None,
    state: Annotated[str, Query(pattern="^(" + "|".join(s.value for s in JobState) + ")?$")] = "",
    kind: Annotated[str, Query(max_length=64, pattern=r"^[a-z0-9_.]*$")] = "",
    project_id: Annotated[str, Query(max_length=64, pattern=f"{ID_PATTERN}|^$")] = "",
) -> Response:
    """The filter form sends every field, "" meaning any."""
    org = user.principal.org_id
    stmt = select(Job).options(load_only(*LIST_COLUMNS)).where(Job.org_id == org)
    if state:
        stmt = stmt.where(Job.state == state)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if project_id:
        stmt = stmt.where(Job.project_id == project_id)
    page = paginate_map(session, stmt, Job.id, lambda j: j, PAGE_SIZE, cursor)
    filters = {"state": state, "kind": kind, "project_id": project_id}
    return render(request, "jobs.html", jobs=page.data, next_cursor=page.next_cursor, filters=filters,
                  states=[s.value for s in JobState], kinds=sorted(all_kinds()), projects=_projects(session, org))


@router.get("/jobs/live.json")
def jobs_live(user: UiUserDep, session: SessionDep, ids: Annotated[str, Query(max_length=64 * 60)] = "") -> JSONResponse:
    """States and counts of the jobs a page shows (its ids, at most one page): what the list polls each second."""
    wanted = [i for i in ids.split(",") if well_formed(i)][:PAGE_SIZE]
    rows = session.scalars(select(Job).where(Job.org_id == user.principal.org_id, Job.id.in_(wanted))) if wanted else []
    return JSONResponse({job.id: live(job) for job in rows}, headers={"Cache-Control": "no-store"})


@router.post("/jobs")
def submit_job(
    request: Request,
    user: MemberFormDep,
    session: SessionDep,
    rt: RuntimeDep,
    kind: Annotated[str, Form(max_length=64)],
    project_id: Annotated[str, Form(max_length=64)],
    spec: Annotated[str, Form(max_length=100_000)] = "{}",
    priority: Annotated[int, Form(ge=0, le=100)] = 50,
) -> Response:
    project = owned(session, user.principal, Project, project_id)
    try:
        if project is None:
            raise ValueError("project: choose one of your projects")
        try:
            body = json.loads(spec or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"spec: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(body, dict):
            raise ValueError("spec: must be a JSON object")
        job, _ = submit(session, user.principal, project, kind, body, priority, None, rt.settings.dispatch.max_attempts,
                        spec_context=spec_context(request))
    except (ValueError, UnknownKind, IdempotencyConflict) as exc:
        message = _spec_error(exc)
        return render(request, "jobs.html", status=422, jobs=[], next_cursor=None, error=message,
                      filters={"state": "", "kind": kind, "project_id": project_id}, form={"spec": spec, "kind": kind},
                      states=[s.value for s in JobState], kinds=sorted(all_kinds()), projects=_projects(session, user.principal.org_id))
    return redirect(f"/ui/jobs/{job.id}")


def _spec_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return ".".join(str(p) for p in ("spec", *err["loc"])) + f": {err['msg']}"
    if isinstance(exc, UnknownKind):
        return f"kind: {exc}"
    return str(exc)


def _job(session: SessionDep, user: UiUserDep, job_id: str) -> Job:
    job = owned(session, user.principal, Job, job_id)
    if job is None:
        raise not_found()
    return job


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, user: UiUserDep, session: SessionDep) -> Response:
    job = _job(session, user, job_id)
    events = list(session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.seq.desc()).limit(EVENTS_SHOWN)))[::-1]
    outputs = outputs_of(session, job.id)
    asset_ids = list(dict.fromkeys([*(o.asset_id for o in outputs), *job.result_asset_ids]))
    assets = {a.id: a for a in session.scalars(select(Asset).where(Asset.org_id == job.org_id, Asset.id.in_(asset_ids)))} if asset_ids else {}
    results = [assets[i] for i in asset_ids if i in assets]
    project = session.get(Project, job.project_id)
    steps = list(session.scalars(select(WorkflowStep).where(WorkflowStep.run_id == job.id).order_by(WorkflowStep.position, WorkflowStep.step)))
    return render(request, "job.html", job=job, live=live(job), events=events, results=results, project=project, steps=steps,
                  failed=failed_items(session, job.id, limit=100), last_seq=events[-1].seq if events else 0)


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, user: MemberFormDep, session: SessionDep) -> Response:
    job = _job(session, user, job_id)  # type: ignore[arg-type]
    try:
        request_cancel(session, user.principal, job)
    except IllegalTransition as exc:
        raise PageError(409, f"Cannot cancel: {exc}.") from None
    return redirect(f"/ui/jobs/{job.id}")


@router.post("/jobs/{job_id}/retry")
def retry_job(job_id: str, user: MemberFormDep, session: SessionDep, scope: Annotated[str, Form(pattern="^(failed|all)$")] = "failed") -> Response:
    job = _job(session, user, job_id)  # type: ignore[arg-type]
    try:
        retry(session, user.principal, job, scope)
    except NothingToRetry as exc:
        raise PageError(409, f"Nothing to retry: {exc}.") from None
    return redirect(f"/ui/jobs/{job.id}")
