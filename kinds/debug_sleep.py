"""`debug.sleep`: exercises the job machinery on a real cluster without media or models."""

from __future__ import annotations

from pydantic import Field

from kinds.base import JobSpec, KindInfo


class DebugSleepSpec(JobSpec):
    """Sleeps per item and fails a share of items: exercises the job machinery on a real cluster."""

    items: int = Field(default=10, ge=0, le=100_000)
    delay_s: float = Field(default=0.1, ge=0, le=3600)
    fail_rate: float = Field(default=0.0, ge=0, le=1)
    fail_job_above: float = Field(default=1.0, ge=0, le=1, description="fail the job when this share of items failed")
    seed: int = 0

    def total_items(self) -> int:
        return self.items

    def max_failed_fraction(self) -> float:
        return self.fail_job_above


KIND = KindInfo("debug.sleep", DebugSleepSpec, pipeline="pipelines.debug_sleep")
