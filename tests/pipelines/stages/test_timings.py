"""Seconds per phase: what a job's ``timings`` event reports, on a clock the test moves by hand."""

from __future__ import annotations

from pipelines.stages.timings import PhaseClock


class Ticks:
    """A clock that reads what the test last set."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_nested_phase_pauses_the_outer_one_and_phases_add_up() -> None:
    ticks = Ticks()
    clock = PhaseClock(("probe", "render", "record"), now=ticks)
    with clock.phase("probe"):
        ticks.t = 1.0
    with clock.phase("render"):
        ticks.t = 3.0
        with clock.phase("record"):  # a video's outputs recorded while other shots still render
            ticks.t = 3.5
        ticks.t = 6.0
        with clock.phase("record"):
            ticks.t = 6.25
    assert clock.seconds == {"probe": 1.0, "render": 4.5, "record": 0.75}
    assert sum(clock.seconds.values()) == ticks.t


def test_listed_phases_are_reported_even_when_they_never_ran() -> None:
    ticks = Ticks()
    clock = PhaseClock(("probe", "decode", "detect", "render", "record"), now=ticks)
    with clock.phase("decode"):
        ticks.t = 0.12345
    assert clock.rounded() == {"probe": 0.0, "decode": 0.123, "detect": 0.0, "render": 0.0, "record": 0.0}
