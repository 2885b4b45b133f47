"""The OpenAI batch status of a job: two views of one record.

queued → validating; running → validating | in_progress | finalizing (the
runner's phase); cancel_requested → cancelling; succeeded → completed;
failed → failed; cancelled → cancelled. A batch past its completion window
(``expired_at`` set, `farm.batches.expiry`) is finalizing while its job
stops and its files are written, then expired (phase ``expired``).
"""

from __future__ import annotations

from farm.db.models import Batch, Job
from farm.jobs.states import JobState

EXPIRED_PHASE = "expired"


def batch_status(batch: Batch, job: Job) -> str:
    if batch.expired_at is not None:
        return "expired" if batch.phase == EXPIRED_PHASE else "finalizing"
    state = JobState(job.state)
    if state is JobState.queued:
        return "validating"
    if state is JobState.running:
        return batch.phase
    if state is JobState.cancel_requested:
        return "cancelling"
    if state is JobState.succeeded:
        return "completed"
    if state is JobState.cancelled:
        return "cancelled"
    return "failed"
