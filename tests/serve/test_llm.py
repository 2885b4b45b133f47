"""One LLM, two engine configs: Serve's ``LLMConfig`` and ``ray.data.llm``'s processor config, from one registry entry."""

from __future__ import annotations

import pytest
from ray.serve.llm import LLMConfig

from serve.diffusion.app import deployment_options
from serve.llm import batch_engine_config, llm_config
from serve.registry import ModelSpec
from serve.scaling import scaling_options

CPU = ModelSpec(name="lm", kind="llm", source="/weights/lm", cpus=2, engine_kwargs={"max_model_len": 512})
GPU = ModelSpec(name="big", kind="llm", source="org/big", gpus=2, accelerator_type="L4", max_replicas=4)


@pytest.mark.parametrize("spec", [CPU, GPU], ids=["cpu", "gpu"])
def test_serve_and_batch_run_the_same_engine(spec: ModelSpec) -> None:
    online = llm_config(spec)
    LLMConfig.model_validate(online)
    batch = batch_engine_config(spec, batch_size=16, concurrency=1)
    assert batch.model_source == online["model_loading_config"]["model_source"] == spec.source
    # batch adds only what batch needs: no per-step stats (progress is the farm's), ray.data.llm's task type
    assert batch.engine_kwargs == {**online["engine_kwargs"], "disable_log_stats": True, "task_type": "generate"}
    assert batch.accelerator_type == online["accelerator_type"]
    assert (batch.batch_size, batch.log_engine_metrics) == (16, False)


def test_cpu_engines_hold_the_registrys_cpus() -> None:
    assert llm_config(CPU)["placement_group_config"] == {"bundles": [{"CPU": 2.0}]}
    assert batch_engine_config(CPU).placement_group_config["bundles"] == [{"CPU": 2.0, "GPU": 0.0}]


def test_gpu_engines_split_over_their_gpus() -> None:
    online, batch = llm_config(GPU), batch_engine_config(GPU)
    assert online["engine_kwargs"]["tensor_parallel_size"] == batch.engine_kwargs["tensor_parallel_size"] == 2
    assert "placement_group_config" not in online and batch.placement_group_config is None  # Ray LLM's GPU bundles
    assert online["accelerator_type"] == batch.accelerator_type == "L4"


def test_a_diffusion_model_is_no_llm() -> None:
    sd = ModelSpec(name="sd", kind="diffusion", source="org/sd")
    with pytest.raises(ValueError, match="not an LLM"):
        batch_engine_config(sd)
    with pytest.raises(ValueError, match="not an LLM"):
        llm_config(sd)


def test_llm_and_diffusion_deployments_scale_alike() -> None:
    sd = ModelSpec(name="sd", kind="diffusion", source="org/sd", min_replicas=0, max_replicas=3, max_queued_requests=5)
    options = deployment_options(sd)
    assert {k: options[k] for k in scaling_options(sd)} == scaling_options(sd)
    assert llm_config(GPU)["deployment_config"] == scaling_options(GPU)
    assert scaling_options(sd)["autoscaling_config"]["initial_replicas"] == 1 and scaling_options(sd)["max_queued_requests"] == 5
