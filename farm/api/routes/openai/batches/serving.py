"""The batch view of a `batch.*` job: a batch row and its job, as OpenAI's batch object."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.batches.status import batch_status
from farm.db.models import Batch, Job, JobEvent
from farm.openai.batches import BatchErrors, BatchObject, RequestCounts


def _ts(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def batch_object(batch: Batch, job: Job, cancelling_at: datetime | None = None) -> BatchObject:
    status = batch_status(batch, job)
    end = job.finished_at
    return BatchObject(
        id=batch.id, endpoint=batch.endpoint, input_file_id=batch.input_file_id,
        errors=BatchErrors(data=batch.errors) if batch.errors else None,
        completion_window=batch.completion_window, status=status,
        output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
        created_at=_ts(batch.created_at) or 0, in_progress_at=_ts(batch.in_progress_at), expires_at=_ts(batch.expires_at),
        finalizing_at=_ts(batch.finalizing_at),
        completed_at=_ts(end) if status == "completed" else None,
        failed_at=_ts(end) if status == "failed" else None,
        expired_at=_ts(batch.expired_at) if status == "expired" else None,
        cancelling_at=_ts(cancelling_at), cancelled_at=_ts(end) if status == "cancelled" else None,
        request_counts=RequestCounts(total=job.total, completed=job.succeeded, failed=job.failed),
        metadata=batch.batch_metadata or None, job_id=job.id,
    )


def view(session: Session, batch: Batch, job: Job) -> BatchObject:
    """The batch object, with when cancelling began (the job's last cancel request)."""
    cancelling = session.scalars(
        select(JobEvent.created_at).where(JobEvent.job_id == job.id, JobEvent.type == "state")
        .where(JobEvent.data["state"].as_string() == "cancel_requested").order_by(JobEvent.seq.desc()).limit(1)
    ).first()
    return batch_object(batch, job, cancelling)
