"""OpenAI Batches API objects: the batch view of a `batch.*` job."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from farm.batches.status import batch_status
from farm.db.models import Batch, Job


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(max_length=64)
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/images/generations"]
    completion_window: Literal["24h"] = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None = None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, str] | None
    job_id: str = Field(description="The farm job behind this batch (GET /v1/jobs/{id})")

    @classmethod
    def of(cls, batch: Batch, job: Job, cancelling_at: datetime | None = None) -> BatchObject:
        status = batch_status(batch, job)
        ts = lambda d: int(d.timestamp()) if d else None  # noqa: E731
        end = job.finished_at
        return cls(
            id=batch.id, endpoint=batch.endpoint, input_file_id=batch.input_file_id,
            errors=BatchErrors(data=batch.errors) if batch.errors else None,
            completion_window=batch.completion_window, status=status,
            output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
            created_at=ts(batch.created_at) or 0, in_progress_at=ts(batch.in_progress_at), expires_at=ts(batch.expires_at),
            finalizing_at=ts(batch.finalizing_at),
            completed_at=ts(end) if status == "completed" else None,
            failed_at=ts(end) if status == "failed" else None,
            expired_at=ts(end) if status == "expired" else None,
            cancelling_at=ts(cancelling_at), cancelled_at=ts(end) if status == "cancelled" else None,
            request_counts=RequestCounts(total=job.total, completed=job.succeeded, failed=job.failed),
            metadata=batch.batch_metadata or None, job_id=job.id,
        )


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
