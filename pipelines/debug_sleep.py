"""`debug.sleep`: sleeps per item and fails a seeded share of items.

Exercises the whole job machinery (progress, cancel, retry, resume) on a
real Ray cluster without any media or model.
"""

from __future__ import annotations

import random
import time

from farm.runner.context import JobContext
from kinds.debug_sleep import DebugSleepSpec


def run(ctx: JobContext) -> None:
    spec = ctx.spec
    assert isinstance(spec, DebugSleepSpec)
    done = ctx.done_items()
    for i in range(spec.items):
        if i in done:
            continue
        ctx.check_cancel()
        time.sleep(spec.delay_s)
        fails = random.Random(f"{spec.seed}:{i}").random() < spec.fail_rate
        ctx.item(i, not fails, f"item {i} failed (fail_rate={spec.fail_rate})" if fails else None)
    ctx.flush()
