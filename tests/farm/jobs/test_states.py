"""The state machine allows exactly the documented transitions."""

from __future__ import annotations

import itertools

import pytest

from farm.jobs.states import TERMINAL, TRANSITIONS, IllegalTransition, JobState, check

ALLOWED = {
    ("queued", "running"), ("queued", "cancelled"),
    ("running", "succeeded"), ("running", "failed"), ("running", "cancel_requested"), ("running", "queued"),
    ("cancel_requested", "cancelled"), ("cancel_requested", "succeeded"), ("cancel_requested", "failed"),
    ("succeeded", "queued"), ("failed", "queued"), ("cancelled", "queued"),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(JobState, JobState)))
def test_transition_table(a: JobState, b: JobState) -> None:
    if (a.value, b.value) in ALLOWED:
        check(a, b)
    else:
        with pytest.raises(IllegalTransition, match=f"a {a.value} job cannot become {b.value}"):
            check(a, b)


def test_terminal_states_only_leave_by_retry() -> None:
    assert {s.value for s in TERMINAL} == {"succeeded", "failed", "cancelled"}
    for s in TERMINAL:
        assert TRANSITIONS[s] == {JobState.queued}
