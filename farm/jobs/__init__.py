"""Jobs: the state machine, events, submission, retries, kind hooks and typed outputs. Kinds live in `kinds`."""

from farm.jobs.states import JobState

__all__ = ["JobState"]
