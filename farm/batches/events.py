"""`batch.<status>` webhook events: the batch view of each job transition and runner phase."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from farm.batches.status import batch_status
from farm.db.models import Batch, Job
from farm.webhooks.outbox import enqueue


def batch_data(batch: Batch, job: Job) -> dict[str, Any]:
    return {
        "id": batch.id, "object": "batch", "status": batch_status(batch, job), "endpoint": batch.endpoint,
        "input_file_id": batch.input_file_id, "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "request_counts": {"total": job.total, "completed": job.succeeded, "failed": job.failed}, "job_id": job.id,
    }


def publish_batch(session: Session, batch: Batch, job: Job) -> None:
    enqueue(session, batch.org_id, f"batch.{batch_status(batch, job)}", batch_data(batch, job))

