"""The events the farm publishes about its own objects, and what their ``data`` holds.

``job.<state>`` is sent each time a job enters a state: on submit
(``job.queued``), and on every transition (``job.running``,
``job.cancel_requested``, ``job.succeeded``, ``job.failed``,
``job.cancelled``, and ``job.queued`` again on retry or requeue).
Kinds publish their own events (batches: ``batch.<status>``) from their
hooks (``farm.jobs.hooks``) through ``farm.webhooks.outbox.enqueue``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from farm.db.models import Job
from farm.webhooks.outbox import enqueue


def job_data(job: Job) -> dict[str, Any]:
    """The job's public summary: enough to act on without calling back (specs stay out)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "priority": job.priority,
        "project_id": job.project_id,
        "counts": {"total": job.total, "succeeded": job.succeeded, "failed": job.failed},
        "error": job.error,
        "result_asset_ids": list(job.result_asset_ids or []),
    }


def publish_job_state(session: Session, job: Job) -> None:
    """Queue ``job.<state>`` for the job's org, in the transaction that changed the state."""
    enqueue(session, job.org_id, f"job.{job.state}", job_data(job))
