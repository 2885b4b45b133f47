"""Creating and cancelling batches: each batch is a `batch.*` job in the farm's queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from farm.accounts import Principal
from farm.batches.events import publish_batch
from farm.db.models import Batch, File, Job, Project
from farm.ids import new_id
from farm.settings import BatchSettings
from farm.jobs.service import submit

ENDPOINT_KINDS = {
    "/v1/chat/completions": "batch.chat",
    "/v1/completions": "batch.chat",
    "/v1/images/generations": "batch.images",
}
#: The windows a client may ask for; how long ``24h`` lasts is the farm's ``batch.completion_window_s``.
WINDOWS = ("24h",)


class BatchRequestError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def create(
    session: Session,
    principal: Principal,
    input_file: File,
    project: Project,
    endpoint: str,
    completion_window: str,
    metadata: dict[str, str] | None,
    max_attempts: int,
    limits: BatchSettings,
    priority: int = 50,
) -> tuple[Batch, Job]:
    if endpoint not in ENDPOINT_KINDS:
        raise BatchRequestError("endpoint", f"endpoint must be one of {', '.join(ENDPOINT_KINDS)}")
    if completion_window not in WINDOWS:
        raise BatchRequestError("completion_window", f"completion_window must be one of {', '.join(WINDOWS)}")
    if input_file.purpose != "batch":
        raise BatchRequestError("input_file_id", f"the input file's purpose is '{input_file.purpose}', not 'batch'")
    batch_id = new_id("batch")
    spec: dict[str, Any] = {"batch_id": batch_id, "max_lines": limits.max_lines, "max_bytes": limits.max_bytes}
    job, _ = submit(session, principal, project, ENDPOINT_KINDS[endpoint], spec, priority, None, max_attempts, commit=False)
    batch = Batch(
        id=batch_id, org_id=principal.org_id, job_id=job.id, input_file_id=input_file.id, endpoint=endpoint,
        completion_window=completion_window, batch_metadata=dict(metadata or {}),
        expires_at=job.created_at + timedelta(seconds=limits.completion_window_s),
    )
    session.add(batch)
    session.flush()
    publish_batch(session, batch, job)
    session.commit()
    return batch, job
