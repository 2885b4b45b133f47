"""The `batch.*` kinds' hook: each job transition is also a `batch.<status>` event."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.batches.events import publish_batch
from farm.db.models import Batch, Job
from farm.jobs.states import JobState


def on_transition(session: Session, job: Job) -> None:
    if job.state == JobState.running.value:
        return  # while running, the runner publishes its phases (in_progress, finalizing) itself
    batch = session.scalars(select(Batch).where(Batch.job_id == job.id)).first()
    if batch is None:  # at submit: the batch row is added right after its job
        return
    if batch.expired_at is not None:
        return  # past its window the job is only being stopped; expiry publishes batch.expired once its files exist
    publish_batch(session, batch, job)
