"""Workflow operations for the API and CLI: save a template, start, cancel and retry runs, and the run's view.

A run is created as a `workflow` job (validated first: a bad definition or
parameter is a `DefinitionError` naming the step and field) with one
`WorkflowStep` row per step; the engine does the rest on the dispatcher's tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.db.models import Job, JobEvent, JobItem, Project, Workflow, WorkflowStep
from farm.ids import new_id
from farm.jobs.service import NothingToRetry, recount, request_cancel, submit, transition
from farm.jobs.states import TERMINAL, JobState
from farm.workflows.definition import check_specs, definition_json, load, resolve_params, validate
from farm.workflows.engine import CANCELLED, FAILED, PENDING, SKIPPED, STEP_DONE
from kinds.workflow import RUN_KIND


def save_workflow(session: Session, principal: Principal, data: str | Mapping[str, Any], context: dict[str, Any] | None = None) -> Workflow:
    """Store a validated definition as a template (DefinitionError if it is not valid)."""
    defn = load(data)
    plan = validate(defn)
    if all(p.default is not None for p in defn.params.values()):
        check_specs(plan, resolve_params(defn, {}), context)
    wf = Workflow(id=new_id("wf"), org_id=principal.org_id, name=defn.name, description=defn.description,
                  definition=definition_json(defn), created_by=principal.key_id)
    session.add(wf)
    audit.record(session, principal, "workflow.create", "workflow", wf.id, name=defn.name)
    session.commit()
    return wf


def start_run(
    session: Session, principal: Principal, project: Project, data: str | Mapping[str, Any], params: Mapping[str, Any],
    *, priority: int = 50, idempotency_key: str | None = None, workflow_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> tuple[Job, bool]:
    """A new run (or, for a replayed Idempotency-Key, the original one): validated, its steps pending."""
    defn = load(data)
    plan = validate(defn)
    values = resolve_params(defn, params)
    check_specs(plan, values, context)
    spec = {"definition": definition_json(defn), "params": values, "workflow_id": workflow_id}
    run, created = submit(session, principal, project, RUN_KIND, spec, priority, idempotency_key, 1, commit=False)
    if created:
        run.total = len(defn.steps)
        session.add_all(WorkflowStep(run_id=run.id, step=s.id, position=i) for i, s in enumerate(defn.steps))
        session.commit()
    return run, created


def cancel_run(session: Session, principal: Principal, run: Job) -> None:
    """A queued run ends at once, a running one stops its steps on the next tick (IllegalTransition if it has ended)."""
    request_cancel(session, principal, run)


def retry_run(session: Session, principal: Principal, run: Job) -> list[str]:
    """Re-run only the failed, cancelled and skipped steps as new child jobs; succeeded steps keep their jobs and outputs."""
    if JobState(run.state) not in TERMINAL:
        raise NothingToRetry(f"a {run.state} run cannot be retried; wait for it to end or cancel it")
    rows = steps_of(session, run.id)
    again = [r for r in rows if r.state in (FAILED, SKIPPED, CANCELLED)]
    if not again:
        raise NothingToRetry("every step of the run succeeded")
    session.execute(delete(JobItem).where(JobItem.job_id == run.id, JobItem.idx.in_([r.position for r in again])))
    for row in again:
        row.state, row.attempts, row.reason, row.not_before, row.outputs, row.finished_at = PENDING, 0, None, None, {}, None
    recount(session, run)
    run.error = None
    transition(session, run, JobState.queued, retry=[r.step for r in again])
    audit.record(session, principal, "workflow_run.retry", "job", run.id, steps=[r.step for r in again])
    session.commit()
    return [r.step for r in again]


def steps_of(session: Session, run_id: str) -> list[WorkflowStep]:
    return list(session.scalars(select(WorkflowStep).where(WorkflowStep.run_id == run_id).order_by(WorkflowStep.position)))


def run_view(session: Session, run: Job) -> dict[str, Any]:
    """Every step's state, attempts, child jobs, outputs and backoff (each retry's wait, from the run's events), with its current child's progress."""
    plan = validate(load(run.spec["definition"]))
    defn = plan.definition
    retries: dict[str, list[dict[str, Any]]] = {}
    for ev in session.scalars(select(JobEvent).where(JobEvent.job_id == run.id, JobEvent.type == "step").order_by(JobEvent.seq)):
        if ev.data.get("state") == PENDING and ev.data.get("not_before"):
            retries.setdefault(ev.data["step"], []).append(
                {"after_attempt": ev.data.get("attempt"), "failed_at": ev.created_at, "backoff_s": ev.data.get("backoff_s"),
                 "not_before": ev.data["not_before"], "reason": ev.data.get("reason")})
    steps = []
    for row in steps_of(session, run.id):
        child = session.get(Job, row.job_ids[-1]) if row.job_ids else None
        steps.append({
            "id": row.step, "kind": defn.step(row.step).kind, "state": row.state, "attempts": row.attempts,
            "job_ids": list(row.job_ids), "job_id": child.id if child else None,
            "job_state": child.state if child else None,
            "counts": {"total": child.total, "succeeded": child.succeeded, "failed": child.failed} if child else None,
            "outputs": dict(row.outputs), "not_before": row.not_before, "reason": row.reason, "retries": retries.get(row.step, []),
            "depends_on": plan.waits_on(row.step),
            "started_at": row.started_at, "finished_at": row.finished_at,
        })
    return {
        "id": run.id, "workflow": defn.name, "workflow_id": run.spec.get("workflow_id"), "project_id": run.project_id,
        "state": run.state, "priority": run.priority, "params": run.spec.get("params", {}), "error": run.error,
        "done": sum(1 for s in steps if s["state"] in STEP_DONE), "steps": steps,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
    }
