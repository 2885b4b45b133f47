"""LLM applications: registry entries → ``ray.serve.llm`` configs.

We write no LLM server: the application is ``ray.serve.llm.build_openai_app``
(vLLM behind Ray Serve LLM's OpenAI ingress) and this module only turns
:class:`~serve.registry.ModelSpec` entries into its ``LLMServingArgs``, as
plain JSON-able dicts so the same thing can be written into a Serve config
file. Several models share one application (one ingress, one deployment each).
"""

from __future__ import annotations

from typing import Any

from serve.registry import ModelSpec

#: The Serve config ``import_path`` of the LLM application.
LLM_IMPORT_PATH = "ray.serve.llm:build_openai_app"


def llm_config(spec: ModelSpec) -> dict[str, Any]:
    """``LLMConfig`` fields for one model: weights, vLLM engine args, resources, scaling."""
    if spec.kind != "llm":
        raise ValueError(f"{spec.name} is a {spec.kind} model, not an LLM")
    engine_kwargs = dict(spec.engine_kwargs)
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.name, "model_source": spec.source},
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": spec.min_replicas,
                "initial_replicas": max(spec.min_replicas, 1),
                "max_replicas": spec.max_replicas,
                "target_ongoing_requests": spec.target_ongoing_requests,
                "upscale_delay_s": spec.upscale_delay_s,
                "downscale_delay_s": spec.downscale_delay_s,
            },
            "max_ongoing_requests": spec.max_ongoing_requests,
            # Beyond this the ingress's handle raises BackPressureError: a 503 at once.
            "max_queued_requests": spec.max_queued_requests,
        },
    }
    if spec.gpus:
        config["accelerator_type"] = spec.accelerator_type
        if spec.gpus > 1 and "tensor_parallel_size" not in engine_kwargs:
            engine_kwargs["tensor_parallel_size"] = int(spec.gpus)
    else:
        # vLLM's CPU build: no accelerator, one CPU bundle for the engine.
        config["accelerator_type"] = None
        config["placement_group_config"] = {"bundles": [{"CPU": spec.cpus}]}
    return config


def llm_app_args(specs: list[ModelSpec], *, ingress_cpus: float = 1) -> dict[str, Any]:
    """``LLMServingArgs`` for ``build_openai_app``: every LLM of the registry in one app."""
    if not specs:
        raise ValueError("no LLM in the registry")
    return {
        "llm_configs": [llm_config(spec) for spec in specs],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": ingress_cpus}},
    }
