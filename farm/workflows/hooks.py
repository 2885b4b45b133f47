"""`workflow.<event>` webhooks from a run's own state changes (the `workflow` kind's hook)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from farm.db.models import Job
from farm.webhooks.events import job_data
from farm.webhooks.outbox import enqueue

#: A run's job state → the webhook event it sends (queued and cancel_requested send none of their own).
EVENTS = {"running": "workflow.started", "succeeded": "workflow.succeeded", "failed": "workflow.failed", "cancelled": "workflow.cancelled"}


def on_transition(session: Session, job: Job) -> None:
    event = EVENTS.get(job.state)
    if event is not None:
        enqueue(session, job.org_id, event, {**job_data(job), "workflow": (job.spec.get("definition") or {}).get("name")})
