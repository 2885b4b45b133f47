"""Jobs: the state machine, events, submission and retries. Kinds live in `kinds`."""

from farm.jobs.states import JobState

__all__ = ["JobState"]
