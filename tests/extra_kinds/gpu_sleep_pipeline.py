"""The GPU debug kind's pipeline: one Ray task per item, holding the job's GPU, one after another.

Each item's task asks Ray for what the spec declares (CPUs, GPUs, accelerator
type), so it runs only on a GPU node; the node it ran on is recorded as an
event, so a test can tell GPU nodes did the work.
"""

from __future__ import annotations

import time

from farm.runner import JobContext
from tests.extra_kinds.gpu_sleep_kind import GpuSleepSpec


def hold_gpu(delay_s: float, until_gpu_nodes: int) -> str:
    import ray

    time.sleep(delay_s)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")) < until_gpu_nodes:
        time.sleep(0.2)
    return ray.get_runtime_context().get_node_id()


def run(ctx: JobContext) -> None:
    import ray

    spec = ctx.spec
    assert isinstance(spec, GpuSleepSpec)
    ctx.connect_ray()
    r = spec.resources()
    options: dict[str, object] = {"num_cpus": r.cpus, "num_gpus": r.gpus}
    if r.accelerator_type:
        options["accelerator_type"] = r.accelerator_type
    task = ray.remote(hold_gpu).options(**options)
    for i in range(spec.items):
        if i in ctx.done_items():
            continue
        ctx.check_cancel()
        node_id = ray.get(task.remote(spec.delay_s, spec.until_gpu_nodes))
        ctx.event("gpu_item", item=i, node_id=node_id)
        ctx.item(i, True)
    ctx.flush()
