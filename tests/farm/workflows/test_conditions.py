"""The `when` language: comparisons, and/or/not, parameters and step facts; anything else is refused."""

from __future__ import annotations

import pytest

from farm.workflows.conditions import ConditionError, check_names, evaluate, parse

STEPS = {"shots": {"state": "succeeded", "failed_items": 2, "succeeded_items": 3, "total_items": 5, "attempts": 1},
         "caption": {"state": "failed", "failed_items": 0, "succeeded_items": 0, "total_items": 1, "attempts": 2}}


@pytest.mark.parametrize(("text", "params", "expected"), [
    ("steps.shots.failed_items > 0", {}, True),
    ("steps.shots.failed_items >= 3", {}, False),
    ("steps.caption.state == 'failed'", {}, True),
    ('steps.caption.state != "failed"', {}, False),
    ("params.notify", {"notify": True}, True),
    ("params.notify", {"notify": False}, False),
    ("not params.notify and steps.shots.succeeded_items == 3", {"notify": False}, True),
    ("params.notify or steps.caption.attempts < 2", {"notify": False}, False),
    ("(params.notify or steps.caption.attempts == 2) and steps.shots.total_items == 5", {"notify": False}, True),
    ("params.mode == 'fast'", {"mode": "fast"}, True),
    ("steps.shots.failed_items > 1.5", {}, True),
])
def test_conditions_evaluate(text: str, params: dict[str, object], expected: bool) -> None:
    node = parse(text)
    check_names(node, params, STEPS)
    assert evaluate(node, params, STEPS) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("steps.shots.failed_items >", "ends too early"),
    ("params.x; import os", "cannot read"),
    ("__import__('os')", "unexpected '\\('"),
    ("os.system", "not params.<name> or steps"),
    ("steps.shots.outputs > 0", "a step has no 'outputs'"),
    ("params.missing", "unknown parameter 'missing'"),
    ("steps.ghost.state == 'failed'", "unknown step 'ghost'"),
    ("(params.notify", "not closed"),
    ("", "an empty condition"),
])
def test_anything_else_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        check_names(parse(text), {"notify": True}, STEPS)
    assert check_names(parse("steps.shots.state == 'x' or steps.caption.attempts > 1"), {}, STEPS) == ["shots", "caption"]


def test_comparing_unlike_values_is_an_error_not_a_guess() -> None:
    with pytest.raises(ConditionError, match="cannot compare 'succeeded' > 1"):
        evaluate(parse("steps.shots.state > 1"), {}, STEPS)
