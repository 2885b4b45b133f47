"""Jobs: typed specs per kind, the state machine, events, submission and retries."""

from farm.jobs.kinds import KINDS, JobSpec, get_kind, job_kind
from farm.jobs.states import JobState

__all__ = ["KINDS", "JobSpec", "JobState", "get_kind", "job_kind"]
