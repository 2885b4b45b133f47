"""LLM engines: registry entries → ``ray.serve.llm`` configs online and ``ray.data.llm`` configs in batch.

We write no LLM server and no batch engine. Online the application is
``ray.serve.llm.build_openai_app`` (vLLM behind Ray Serve LLM's OpenAI
ingress), fed with ``LLMServingArgs`` as plain JSON-able dicts so the same
thing can be written into a Serve config file; several models share one
application (one ingress, one deployment each). In batch the engine is
``ray.data.llm``'s vLLM processor. Ray 2.60 has a config for each
(``LLMConfig``, ``vLLMEngineProcessorConfig``); both are derived here from
one :class:`~serve.registry.ModelSpec`, so weights, engine arguments and
placement cannot drift apart between the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serve.registry import ModelSpec
from serve.scaling import scaling_options

if TYPE_CHECKING:
    from ray.data.llm import vLLMEngineProcessorConfig

#: The Serve config ``import_path`` of the LLM application.
LLM_IMPORT_PATH = "ray.serve.llm:build_openai_app"


def _check_llm(spec: ModelSpec) -> None:
    if not spec.on_vllm:
        what = "runs on transformers, not vLLM" if spec.kind == "vlm" else f"is a {spec.kind} model, not an LLM"
        raise ValueError(f"{spec.name} {what}")


def engine_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """vLLM engine arguments: the registry's, with tensor parallelism over the model's GPUs."""
    kwargs = dict(spec.engine_kwargs)
    if spec.gpus > 1:
        kwargs.setdefault("tensor_parallel_size", int(spec.gpus))
    return kwargs


def placement(spec: ModelSpec) -> dict[str, Any]:
    """Where one engine runs: its accelerator type, and on CPU one bundle of the model's CPUs."""
    if spec.gpus:
        # Ray LLM's default placement: a {GPU: 1} bundle per tensor-parallel worker, of this type.
        return {"accelerator_type": spec.accelerator_type}
    # vLLM's CPU build: no accelerator, one CPU bundle for the engine.
    return {"accelerator_type": None, "placement_group_config": {"bundles": [{"CPU": spec.cpus}]}}


def llm_config(spec: ModelSpec) -> dict[str, Any]:
    """``LLMConfig`` fields for one model: weights, vLLM engine args, resources, scaling."""
    _check_llm(spec)
    return {
        "model_loading_config": {"model_id": spec.name, "model_source": spec.source},
        "engine_kwargs": engine_kwargs(spec),
        "deployment_config": scaling_options(spec),
        **placement(spec),
    }


def llm_app_args(specs: list[ModelSpec], *, ingress_cpus: float = 1) -> dict[str, Any]:
    """``LLMServingArgs`` for ``build_openai_app``: every LLM of the registry in one app."""
    if not specs:
        raise ValueError("no LLM in the registry")
    return {
        "llm_configs": [llm_config(spec) for spec in specs],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": ingress_cpus}},
    }


def batch_engine_config(spec: ModelSpec, **processor: Any) -> vLLMEngineProcessorConfig:
    """``ray.data.llm``'s processor config for one model: the same engine as online, plus ``processor`` tuning.

    ``processor`` holds what only batch has (batch size, concurrency, which
    CPU stages run…). A batch job's progress and usage come from the farm's
    own records, so vLLM's per-step stats and their metrics export are off.
    """
    from ray.data.llm import vLLMEngineProcessorConfig

    _check_llm(spec)
    if spec.kind == "vlm":  # images in the rows' messages: vLLM's own parser loads them before the chat template
        processor.setdefault("prepare_multimodal_stage", {"enabled": True, "chat_template_content_format": "openai"})
    return vLLMEngineProcessorConfig(
        model_source=spec.source,
        engine_kwargs={"disable_log_stats": True, **engine_kwargs(spec)},
        log_engine_metrics=False,
        **placement(spec),
        **processor,
    )
