"""Progress events for long items: at most twice a second, each one also a chance to notice a cancel."""

from __future__ import annotations

import time
from typing import Any

from farm.runner.context import JobContext


class Reporter:
    """Progress fields merged and written as one event at most every ``every_s``; checks for a cancel each time."""

    def __init__(self, ctx: JobContext, every_s: float = 0.5) -> None:
        self.ctx, self.every_s = ctx, every_s
        self.fields: dict[str, Any] = {}
        self._last = 0.0

    def emit(self, force: bool = False, **fields: Any) -> None:
        self.fields.update(fields)
        if force or time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.ctx.flush(**self.fields)
        self.ctx.check_cancel()
