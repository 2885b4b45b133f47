"""The job state machine: every legal transition is listed here and only here."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    cancel_requested = "cancel_requested"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})
ACTIVE = frozenset({JobState.running, JobState.cancel_requested})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.queued: frozenset({JobState.running, JobState.cancelled}),
    # running → queued: the runner died and an attempt is left
    JobState.running: frozenset({JobState.succeeded, JobState.failed, JobState.cancel_requested, JobState.queued}),
    JobState.cancel_requested: frozenset({JobState.cancelled, JobState.succeeded, JobState.failed}),
    # retry: whole job, or only its failed items
    JobState.succeeded: frozenset({JobState.queued}),
    JobState.failed: frozenset({JobState.queued}),
    JobState.cancelled: frozenset({JobState.queued}),
}


class IllegalTransition(Exception):
    def __init__(self, current: JobState, target: JobState) -> None:
        super().__init__(f"a {current.value} job cannot become {target.value}")
        self.current, self.target = current, target


def check(current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
