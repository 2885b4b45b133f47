"""Wall seconds per phase of a job, as its driver sees them, so users can tell where the time went.

A phase opened inside another pauses the outer one: recording each video's
outputs while shots still render counts as recording, not rendering, and the
phases add up to the time they cover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class PhaseClock:
    def __init__(self, phases: Iterable[str] = (), now: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(phases, 0.0)  # listed phases show up even when they took no time
        self._now = now
        self._open: list[tuple[str, float]] = []  # innermost last, with when it last resumed

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = self._now()
        if self._open:
            self._stop(now)
        self._open.append((name, now))
        try:
            yield
        finally:
            now = self._now()
            self._stop(now)
            self._open.pop()
            if self._open:
                self._open[-1] = (self._open[-1][0], now)

    def _stop(self, now: float) -> None:
        name, since = self._open[-1]
        self.seconds[name] = self.seconds.get(name, 0.0) + now - since

    def rounded(self, digits: int = 3) -> dict[str, float]:
        return {name: round(s, digits) for name, s in self.seconds.items()}
