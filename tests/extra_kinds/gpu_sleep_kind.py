"""`debug.gpu_sleep`: a GPU job without a GPU, for the autoscaling tests (added through ``FARM_EXTRA_KINDS``).

It declares the GPU it holds (`JobSpec.resources`), so the dispatcher asks
Ray's autoscaler for it while the job is queued, and its pipeline's tasks
ask Ray for that GPU, so they wait for a GPU node; the work itself is CPU
code (a sleep), which runs on the fake provider's GPU nodes here.
"""

from __future__ import annotations

from pydantic import Field

from kinds.base import JobResources, JobSpec, KindInfo


class GpuSleepSpec(JobSpec):
    """Holds a GPU per item for a while: exercises GPU demand and autoscaling without GPUs."""

    items: int = Field(default=1, ge=1, le=100)
    delay_s: float = Field(default=1.0, ge=0, le=600)
    gpus: float = Field(default=1.0, gt=0, le=8)
    accelerator_type: str | None = Field(default=None, max_length=64)
    until_gpu_nodes: int = Field(
        default=0, ge=0, le=100,
        description="after the delay, keep the GPU until the cluster has this many GPU nodes (a job that is still running while others wait)",
    )

    def total_items(self) -> int:
        return self.items

    def resources(self) -> JobResources:
        return JobResources(cpus=1, gpus=self.gpus, accelerator_type=self.accelerator_type)


KIND = KindInfo("debug.gpu_sleep", GpuSleepSpec, pipeline="tests.extra_kinds.gpu_sleep_pipeline")
