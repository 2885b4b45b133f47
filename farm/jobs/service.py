"""Job operations shared by the API, the dispatcher and the runner.

Every state change goes through ``transition`` (checked against the state
machine, logged as an event); item outcomes are written once each, and the
counts are recomputed from them, so a retried runner can never count twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.db.models import Job, JobEvent, JobItem, Project, utcnow
from farm.ids import new_id
from farm.jobs.hooks import on_transition
from farm.jobs.outputs import drop_unsettled
from farm.jobs.states import TERMINAL, JobState, check
from farm.webhooks.events import publish_job_state
from kinds import parse_spec


class IdempotencyConflict(Exception):
    """The same Idempotency-Key came with a different request."""


class NothingToRetry(Exception):
    pass


def request_hash(kind: str, spec: dict[str, Any], priority: int, project_id: str) -> str:
    body = json.dumps({"kind": kind, "spec": spec, "priority": priority, "project_id": project_id}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def add_event(session: Session, job_id: str, type: str, **data: Any) -> None:
    session.add(JobEvent(job_id=job_id, type=type, data=data))


def transition(session: Session, job: Job, target: JobState, **data: Any) -> None:
    """Move the job to ``target``; a requeued job forgets the outputs its next attempt makes again."""
    current = JobState(job.state)
    check(current, target)
    job.state = target.value
    now = utcnow()
    if target is JobState.running and job.started_at is None:
        job.started_at = now
    if target in TERMINAL:
        job.finished_at = now
    if target is JobState.queued:
        job.finished_at = None
        drop_unsettled(session, job)
    if "error" in data:
        job.error = data["error"]
    add_event(session, job.id, "state", state=target.value, previous=current.value,
              counts=counts(job), **{k: v for k, v in data.items() if v is not None})
    _announce(session, job)


def _announce(session: Session, job: Job) -> None:
    """``job.<state>`` for webhooks, then the kind's own reaction, in the transaction of the change."""
    publish_job_state(session, job)
    on_transition(session, job)


def counts(job: Job) -> dict[str, int]:
    return {"total": job.total, "succeeded": job.succeeded, "failed": job.failed}


def submit(
    session: Session,
    principal: Principal,
    project: Project,
    kind: str,
    spec: dict[str, Any],
    priority: int,
    idempotency_key: str | None,
    max_attempts: int,
    *,
    commit: bool = True,
    spec_context: dict[str, Any] | None = None,
    parent_id: str | None = None,
) -> tuple[Job, bool]:
    """Create a queued job; with an idempotency key, a replay returns the original.

    ``commit=False`` leaves the transaction open so a caller can add its own
    rows (a batch) that must exist exactly when the job does. ``spec_context``
    is what the spec is validated against (the model registry's names);
    ``parent_id`` links a workflow step's job to its run.
    """
    parsed = parse_spec(kind, spec, spec_context)
    normal = parsed.model_dump(mode="json")
    digest = request_hash(kind, normal, priority, project.id)
    if idempotency_key:
        existing = _by_key(session, principal.org_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    job = Job(
        id=new_id("job"), org_id=principal.org_id, project_id=project.id, kind=kind, spec=normal,
        priority=priority, total=parsed.total_items() or 0, max_attempts=max_attempts,
        submitted_by=principal.key_id, idempotency_key=idempotency_key, request_hash=digest, parent_id=parent_id,
    )
    session.add(job)
    try:
        session.flush()  # a concurrent twin with the same key fails here
        add_event(session, job.id, "state", state=JobState.queued.value, counts=counts(job))
        _announce(session, job)
        audit.record(session, principal, "job.create", "job", job.id, kind=kind)
        if commit:
            session.commit()
    except IntegrityError:
        session.rollback()
        existing = _by_key(session, principal.org_id, idempotency_key or "")
        if existing is None:
            raise
        return _replay(existing, digest), False
    return job, True


def _by_key(session: Session, org_id: str, key: str) -> Job | None:
    return session.scalars(select(Job).where(Job.org_id == org_id, Job.idempotency_key == key)).one_or_none()


def _replay(job: Job, digest: str) -> Job:
    if job.request_hash != digest:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    return job


def request_cancel(session: Session, principal: Principal, job: Job) -> None:
    """A queued job is cancelled at once; a running one is asked to stop."""
    current = JobState(job.state)
    target = JobState.cancelled if current is JobState.queued else JobState.cancel_requested
    transition(session, job, target)
    audit.record(session, principal, "job.cancel", "job", job.id)
    session.commit()


def retry(session: Session, principal: Principal, job: Job, scope: str) -> None:
    """Requeue a finished job: only its failed items (outputs of the others stay), or everything from scratch."""
    current = JobState(job.state)
    if current not in TERMINAL:
        raise NothingToRetry(f"a {current.value} job cannot be retried; wait for it to finish or cancel it")
    if scope == "failed":
        if current is JobState.succeeded and job.failed == 0:
            raise NothingToRetry("the job succeeded with no failed items")
        session.execute(delete(JobItem).where(JobItem.job_id == job.id, JobItem.ok.is_(False)))
    else:
        session.execute(delete(JobItem).where(JobItem.job_id == job.id))
        job.result_asset_ids = []
    recount(session, job)
    job.attempts = 0
    job.error = None
    job.ray_job_id = None
    transition(session, job, JobState.queued, retry=scope)
    audit.record(session, principal, "job.retry", "job", job.id, scope=scope)
    session.commit()


def recorded_items(session: Session, job_id: str) -> set[int]:
    return set(session.scalars(select(JobItem.idx).where(JobItem.job_id == job_id)))


def record_items(session: Session, job: Job, outcomes: Iterable[tuple[int, bool, str | None]], attempt: int) -> None:
    """Write item outcomes once each (a replayed outcome is ignored), then recount."""
    rows = [{"job_id": job.id, "idx": i, "ok": ok, "error": err, "attempt": attempt, "created_at": utcnow()} for i, ok, err in outcomes]
    if rows:
        dialect = session.get_bind().dialect.name
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else insert)(JobItem)
        stmt = ins.on_conflict_do_nothing() if hasattr(ins, "on_conflict_do_nothing") else ins
        session.execute(stmt, rows)
    recount(session, job)


def recount(session: Session, job: Job) -> None:
    ok, bad = session.execute(
        select(
            func.count().filter(JobItem.ok.is_(True)),
            func.count().filter(JobItem.ok.is_(False)),
        ).where(JobItem.job_id == job.id)
    ).one()
    job.succeeded, job.failed = int(ok), int(bad)


def failed_items(session: Session, job_id: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.execute(
        select(JobItem.idx, JobItem.error).where(JobItem.job_id == job_id, JobItem.ok.is_(False)).order_by(JobItem.idx).limit(limit)
    )
    return [{"index": i, "error": e} for i, e in rows]
