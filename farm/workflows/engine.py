"""Advancing workflow runs: the control plane turns ready steps into child jobs and settles the run.

A run is a job of kind `workflow` that never goes to Ray. The dispatcher
calls `advance_all` on every tick while it holds the single-active lease, so
two control planes never advance the same run; each run is also advanced
under a row lock, and a step's child job is submitted with the idempotency
key ``wf:<run>:<step>:<n>`` (its n-th child), so a replayed tick (a restart
between submit and commit) finds the job it already made instead of a twin.
Everything is read back from the database each tick: a restarted control
plane carries on where the last one stopped.

Retries, one mechanism per kind of failure, never stacked on the same one:

* system failures — a runner that died, was killed, or whose node was lost —
  are the dispatcher's: it requeues the same child job (up to
  ``dispatch.max_attempts`` runner starts) and the step does not notice;
* step failures — the child job ended ``failed`` (its pipeline reported
  failure, or its runner retries ran out) or ran past the step's
  ``timeout_s`` — are the step's ``retry`` policy's: after
  min(cap, base·2^(n-1)) ± jitter seconds (``not_before``, shown in the
  run's view) a new child job runs the next attempt.

A step whose attempts are spent fails the run (unless
``continue_on_failure``); steps not yet started are then skipped, and so are
steps that need a step that did not succeed. Cancelling the run cancels the
running child jobs (the dispatcher stops their Ray jobs) and skips the rest.
A run ends only when none of its child jobs is still active.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.accounts import Principal
from farm.db import Database
from farm.db.models import Job, Project, Role, WorkflowStep, utcnow
from farm.jobs.outputs import outputs_of
from farm.jobs.service import IdempotencyConflict, add_event, record_items, submit, transition
from farm.jobs.states import TERMINAL, JobState
from farm.settings import Settings
from farm.workflows import conditions
from farm.workflows.definition import Plan, load, resolve_spec, validate
from kinds.workflow import RUN_KIND, WorkflowRunSpec

log = logging.getLogger("farm.workflows")

PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED = "pending", "running", "succeeded", "failed", "skipped", "cancelled"
STEP_STATES = (PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)
STEP_DONE = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})
RUN_OPEN = (JobState.queued.value, JobState.running.value, JobState.cancel_requested.value)


def advance_all(db: Database, settings: Settings, now: datetime | None = None) -> None:
    """One pass over every run with work left; a run that raises is logged and retried next tick."""
    with db.session() as s:
        ids = set(s.scalars(select(Job.id).where(Job.kind == RUN_KIND, Job.state.in_(RUN_OPEN))))
        ids |= set(s.scalars(select(WorkflowStep.run_id).where(WorkflowStep.state.in_((PENDING, RUNNING))).distinct()))
    for run_id in sorted(ids):
        with db.session() as s:
            try:
                advance(s, run_id, settings, now or utcnow())
                s.commit()
            except Exception:
                s.rollback()
                log.exception("advancing workflow run %s failed", run_id)


def advance(s: Session, run_id: str, settings: Settings, now: datetime) -> None:
    """Settle steps whose child jobs ended, start the steps that are ready, and end the run when all are done."""
    run = s.scalars(select(Job).where(Job.id == run_id).with_for_update()).one()
    run_spec = WorkflowRunSpec.model_validate(run.spec)
    plan = validate(load(run_spec.definition))
    rows = {r.step: r for r in s.scalars(select(WorkflowStep).where(WorkflowStep.run_id == run.id))}
    children = {j.id: j for j in s.scalars(select(Job).where(Job.parent_id == run.id))}
    if run.state == JobState.queued.value:
        transition(s, run, JobState.running)
    stopping = run.state in (JobState.cancel_requested.value, JobState.cancelled.value)
    for row in rows.values():
        if row.state == RUNNING:
            _watch(s, run, plan, row, children[row.job_ids[-1]], stopping, now)
    for step_id in plan.order:
        row = rows[step_id]
        if row.state == PENDING:
            if stopping:
                _finish(s, run, row, SKIPPED, "the run was cancelled")
            else:
                _start_if_ready(s, run, run_spec.params, plan, rows, row, settings, now)
    _settle(s, run, plan, rows, children, stopping)


def _watch(s: Session, run: Job, plan: Plan, row: WorkflowStep, child: Job, stopping: bool, now: datetime) -> None:
    step = plan.definition.step(row.step)
    state = JobState(child.state)
    if state is JobState.succeeded:
        row.outputs = _outputs(s, child.id)
        _finish(s, run, row, SUCCEEDED, None, counts=child)
    elif state is JobState.failed:
        _attempt_failed(s, run, plan, row, f"job {child.id} failed: {child.error or 'no reason given'}", now)
    elif state is JobState.cancelled:
        _finish(s, run, row, CANCELLED, f"job {child.id} was cancelled")
    elif stopping:
        _cancel_child(s, child, "the workflow run was cancelled")
    elif step.timeout_s is not None and child.started_at is not None and (now - child.started_at).total_seconds() > step.timeout_s:
        _cancel_child(s, child, f"the step timed out after {step.timeout_s:g} s")
        _attempt_failed(s, run, plan, row, f"timed out after {step.timeout_s:g} s (job {child.id} cancelled)", now)


def _cancel_child(s: Session, child: Job, reason: str) -> None:
    """Like a user's cancel: a queued job ends at once, a running one is stopped (its Ray job after the grace period)."""
    if child.state == JobState.queued.value:
        transition(s, child, JobState.cancelled, reason=reason)
    elif child.state == JobState.running.value:
        transition(s, child, JobState.cancel_requested, reason=reason)


def _attempt_failed(s: Session, run: Job, plan: Plan, row: WorkflowStep, reason: str, now: datetime) -> None:
    policy = plan.definition.step(row.step).retry
    if row.attempts < policy.max_attempts:
        wait = policy.delay(row.attempts, seed=f"{run.id}:{row.step}:{len(row.job_ids)}")
        row.state, row.not_before = PENDING, now + timedelta(seconds=wait)
        row.reason = f"attempt {row.attempts} of {policy.max_attempts}: {reason}; next attempt after {wait:.1f} s"
        add_event(s, run.id, "step", step=row.step, state=PENDING, attempt=row.attempts, reason=reason,
                  backoff_s=round(wait, 3), not_before=row.not_before.isoformat())
    else:
        _finish(s, run, row, FAILED, reason if policy.max_attempts == 1 else f"{reason} (after {row.attempts} attempts)")


def _finish(s: Session, run: Job, row: WorkflowStep, state: str, reason: str | None, counts: Job | None = None) -> None:
    row.state, row.reason, row.finished_at, row.not_before = state, reason, utcnow(), None
    if state in (SUCCEEDED, FAILED):
        record_items(s, run, [(row.position, state == SUCCEEDED, reason)], attempt=max(row.attempts, 1))
    data: dict[str, Any] = {"step": row.step, "state": state, "attempt": row.attempts}
    if reason:
        data["reason"] = reason
    if counts is not None:
        data["counts"] = {"total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed}
    add_event(s, run.id, "step", **data)


def _start_if_ready(s: Session, run: Job, params: Mapping[str, Any], plan: Plan, rows: Mapping[str, WorkflowStep],
                    row: WorkflowStep, settings: Settings, now: datetime) -> None:
    fatal = next((r for r in rows.values() if r.state == FAILED and not plan.definition.step(r.step).continue_on_failure), None)
    if fatal is not None:
        _finish(s, run, row, SKIPPED, f"the run failed: step {fatal.step!r} failed")
        return
    if any(rows[d].state not in STEP_DONE for d in plan.waits_on(row.step)):
        return
    missed = next((d for d in plan.needs[row.step] if rows[d].state != SUCCEEDED), None)
    if missed is not None:
        _finish(s, run, row, SKIPPED, f"step {missed!r} {rows[missed].state}, not succeeded")
        return
    step = plan.definition.step(row.step)
    condition = plan.conditions[row.step]
    if condition is not None:
        try:
            holds = conditions.evaluate(condition, params, {k: _facts(s, r) for k, r in rows.items()})
        except conditions.ConditionError as exc:
            _finish(s, run, row, FAILED, f"when: {exc}")
            return
        if not holds:
            _finish(s, run, row, SKIPPED, f"condition is false: {step.when}")
            return
    if row.not_before is not None and row.not_before > now:
        return
    spec = resolve_spec(step, params, {k: r.outputs for k, r in rows.items() if r.state == SUCCEEDED})
    project = s.get(Project, run.project_id)
    assert project is not None, run.project_id
    principal = Principal(key_id=run.submitted_by or "", org_id=run.org_id, role=Role.member)
    try:
        child, _ = submit(s, principal, project, step.kind, spec, run.priority, f"wf:{run.id}:{row.step}:{len(row.job_ids) + 1}",
                          settings.dispatch.max_attempts, commit=False, parent_id=run.id)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(["spec", *(str(p) for p in err["loc"])])
        _finish(s, run, row, FAILED, f"{where}: {err['msg']}")
        return
    except IdempotencyConflict as exc:
        _finish(s, run, row, FAILED, str(exc))
        return
    row.job_ids = [*row.job_ids, child.id]
    row.attempts += 1
    row.state, row.not_before = RUNNING, None
    row.started_at = row.started_at or now
    add_event(s, run.id, "step", step=row.step, state=RUNNING, attempt=row.attempts, child_job=child.id)


def _facts(s: Session, row: WorkflowStep) -> dict[str, Any]:
    """What a `when` condition may read of a step."""
    child = s.get(Job, row.job_ids[-1]) if row.job_ids else None
    return {
        "state": row.state, "attempts": row.attempts,
        "failed_items": child.failed if child else 0, "succeeded_items": child.succeeded if child else 0,
        "total_items": child.total if child else 0,
    }


def _outputs(s: Session, job_id: str) -> dict[str, list[str]]:
    """A finished child's outputs by name, asset ids in item order: what later steps' references get."""
    out: dict[str, list[str]] = {}
    for o in outputs_of(s, job_id):
        out.setdefault(o.output, []).append(o.asset_id)
    return out


def _settle(s: Session, run: Job, plan: Plan, rows: Mapping[str, WorkflowStep], children: Mapping[str, Job], stopping: bool) -> None:
    if any(r.state not in STEP_DONE for r in rows.values()):
        return
    if any(JobState(c.state) not in TERMINAL for c in children.values()):
        return  # a timed-out or cancelled child is still stopping: the run ends after it
    if JobState(run.state).terminal:
        return
    failed = [r for r in rows.values() if r.state == FAILED and not plan.definition.step(r.step).continue_on_failure]
    cancelled = [r for r in rows.values() if r.state == CANCELLED]
    if stopping:
        transition(s, run, JobState.cancelled)
    elif failed or cancelled:
        bad = failed[0] if failed else cancelled[0]
        transition(s, run, JobState.failed, error=f"step {bad.step!r} {bad.state}: {bad.reason}")
    else:
        transition(s, run, JobState.succeeded)
