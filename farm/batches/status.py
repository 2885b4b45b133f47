"""The OpenAI batch status of a job: two views of one record.

queued → validating; running → validating | in_progress | finalizing (the
runner's phase); cancel_requested → cancelling; succeeded → completed;
failed → failed (or expired, past the completion window); cancelled → cancelled.
"""

from __future__ import annotations

from farm.db.models import Batch, Job
from farm.jobs.states import JobState

EXPIRED = "the batch did not finish within its completion window"


def batch_status(batch: Batch, job: Job) -> str:
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
    return "expired" if job.error == EXPIRED else "failed"
