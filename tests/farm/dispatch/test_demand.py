"""The farm's GPU demand: what each job needs, and how much of it the farm asks for, org by org."""

from __future__ import annotations

from farm.dispatch.autoscaler import bundles, decode, encode
from farm.dispatch.demand import Bundle, JobDemand, job_bundles, plan, registry_resources
from kinds.batch_images import BatchImagesSpec
from kinds.debug_sleep import DebugSleepSpec
from kinds.video_restyle import VideoRestyleSpec
from serve.registry import ModelRegistry, ModelSpec
from tests.extra_kinds.gpu_sleep_kind import GpuSleepSpec

GPU = (Bundle(1, 1, None),)
REGISTRY = ModelRegistry.from_specs([
    ModelSpec(name="sd-l4", kind="diffusion", source="/m/sd", gpus=1, cpus=4, accelerator_type="L4"),
    ModelSpec(name="sd-cpu", kind="diffusion", source="/m/sd-cpu"),
    ModelSpec(name="llama-h100", kind="llm", source="/m/llama", gpus=2, accelerator_type="H100"),
])


def queued(org: str, n: int, first: int = 0, bundles: tuple[Bundle, ...] = GPU, priority: int = 50) -> list[JobDemand]:
    return [JobDemand(f"{org}{i:02d}", org, False, bundles, priority) for i in range(first, first + n)]


def running(org: str, n: int, first: int = 0) -> list[JobDemand]:
    return [JobDemand(f"{org}{i:02d}", org, True, GPU) for i in range(first, first + n)]


def gpus_request(n: int) -> tuple[tuple[Bundle, int], ...]:
    return ((GPU[0], n),) if n else ()


def test_a_jobs_gpus_come_from_its_kind_and_the_registry_entries_of_its_models() -> None:
    models = registry_resources(lambda: REGISTRY)
    restyle = VideoRestyleSpec(asset_ids=["a"], prompt="ink", model="sd-l4")
    assert job_bundles(restyle, models) == (Bundle(4, 1, "L4"),)
    assert Bundle(4, 1, "L4").resources() == {"CPU": 4, "GPU": 1, "accelerator_type:L4": 0.001}
    # the registry's first diffusion model when the spec names none; a CPU model asks for nothing
    assert job_bundles(VideoRestyleSpec(asset_ids=["a"], prompt="ink"), models) == (Bundle(4, 1, "L4"),)
    assert job_bundles(VideoRestyleSpec(asset_ids=["a"], prompt="ink", model="sd-cpu"), models) == ()
    assert job_bundles(BatchImagesSpec(batch_id="batch_" + "0" * 28), models) == (Bundle(4, 1, "L4"),)
    # a kind whose own work holds a GPU declares it; CPU kinds need nothing from the autoscaler
    assert job_bundles(GpuSleepSpec(gpus=2, accelerator_type="A10G"), models) == (Bundle(1, 2, "A10G"),)
    assert job_bundles(DebugSleepSpec(), models) == ()
    # an unreadable registry asks for nothing rather than stopping the dispatcher
    def broken() -> ModelRegistry:
        raise FileNotFoundError("models.yaml")
    assert job_bundles(restyle, registry_resources(broken)) == ()


def test_queued_gpu_jobs_are_asked_for_before_they_run_and_the_request_goes_as_the_queue_drains() -> None:
    p = plan(queued("a", 3), max_gpus=8)
    assert p.admitted == {"a00", "a01", "a02"} and not p.held
    assert p.request == gpus_request(3)
    assert bundles(p.request) == [{"CPU": 1, "GPU": 1}] * 3
    assert plan(running("a", 1) + queued("a", 2, first=1), max_gpus=8).request == gpus_request(3)  # the same while job 1 runs
    assert plan(running("a", 1, first=2), max_gpus=8).request == gpus_request(1)
    assert plan([], max_gpus=8).request == ()  # drained: nothing asked, nodes go once idle
    cpu_only = [JobDemand("c", "a", False, ())]
    assert plan(cpu_only, max_gpus=8).request == () and not plan(cpu_only, max_gpus=8).held


def test_the_farm_cap_holds_however_many_jobs_are_queued() -> None:
    p = plan(queued("a", 10), max_gpus=2)
    assert p.admitted == {"a00", "a01"} and len(p.held) == 8
    assert p.request == gpus_request(2)
    # a job that holds two GPUs does not squeeze in beside one that holds one; the org's order is kept
    big = queued("b", 1, bundles=(Bundle(1, 2, None),))
    p = plan(queued("a", 1) + big + queued("a", 1, first=1), max_gpus=2)
    assert "b00" in p.held and p.admitted == {"a00", "a01"}


def test_two_orgs_with_queued_jobs_share_the_cap() -> None:
    p = plan(queued("a", 10) + queued("b", 3), max_gpus=4)
    assert p.org_gpus == {"a": 2, "b": 2}
    assert p.admitted == {"a00", "a01", "b00", "b01"}
    # an org that ran first keeps what it holds; the one that arrives gets what is left, not nothing
    p = plan(running("a", 3) + queued("a", 7, first=3) + queued("b", 3), max_gpus=4)
    assert p.org_gpus == {"a": 3, "b": 1} and "b00" in p.admitted and "a03" in p.held
    # an org with little need leaves the rest to the other
    assert plan(queued("a", 10) + queued("b", 1), max_gpus=4).org_gpus == {"a": 3, "b": 1}
    # at equal shares, the higher priority goes first
    p = plan(queued("a", 2) + queued("b", 2, priority=90), max_gpus=1)
    assert p.admitted == {"b00"}


def test_one_orgs_flood_grows_the_cluster_to_its_share_only() -> None:
    p = plan(queued("a", 10), max_gpus=4, org_share=0.5)
    assert p.org_gpus == {"a": 2} and p.request == gpus_request(2)
    p = plan(queued("a", 10) + queued("b", 10), max_gpus=4, org_share=0.5)
    assert p.org_gpus == {"a": 2, "b": 2}


def test_a_steady_queue_asks_for_the_same_thing_whichever_jobs_hold_the_gpus() -> None:
    before = plan(running("a", 2) + queued("a", 8, first=2), max_gpus=2)
    after = plan(running("a", 2, first=2) + queued("a", 6, first=4), max_gpus=2)  # two finished, two more started
    assert before.request == after.request and before.admitted != after.admitted
    shuffled = plan(list(reversed(queued("a", 3, bundles=(Bundle(1, 1, "L4"),)) + queued("b", 2))), max_gpus=8)
    assert shuffled.request == plan(queued("b", 2) + queued("a", 3, bundles=(Bundle(1, 1, "L4"),)), max_gpus=8).request
    assert decode(encode(shuffled.request)) == shuffled.request  # what a demand job carries, and a restarted dispatcher reads back
