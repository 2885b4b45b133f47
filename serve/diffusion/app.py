"""Build one diffusion Serve application from a registry entry.

``build_app`` is an application builder: a Serve config file names it as
``import_path: serve.diffusion.app:build_app`` with the model spec as
``args``, so ``farm up``, ``serve deploy`` and a KubeRay RayService all build
the same thing. Autoscaling and back-pressure come from the spec through the
same builder as the LLM deployments' (:mod:`serve.scaling`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from ray.serve import Application

from serve.diffusion.protocol import ImageLimits
from serve.registry import ModelSpec
from serve.scaling import scaling_options


class DiffusionAppArgs(BaseModel):
    """The ``args`` of a diffusion application in a Serve config."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec
    limits: ImageLimits = ImageLimits()
    backpressure_status: Literal[503, 429] = 503


def deployment_options(spec: ModelSpec, backpressure_status: int = 503) -> dict[str, Any]:
    """Serve deployment options for ``spec``: autoscaling, back-pressure, resources."""
    actor: dict[str, Any] = {"num_cpus": spec.cpus}
    if spec.gpus:
        actor["num_gpus"] = spec.gpus
    if spec.accelerator_type:
        actor["accelerator_type"] = spec.accelerator_type
    return {
        **scaling_options(spec),
        "backpressure_config": {"status_code": backpressure_status, "retry_after_s": spec.retry_after_s},
        "ray_actor_options": actor,
        # vLLM-sized defaults would wait 30 s on a wedged engine; images are quick.
        "health_check_period_s": 10,
        "graceful_shutdown_timeout_s": 30,
    }


def build_app(args: dict[str, Any]) -> Application:
    """The application for one diffusion model (``args``: :class:`DiffusionAppArgs`)."""
    from ray import serve

    from serve.diffusion.server import DiffusionServer

    parsed = DiffusionAppArgs.model_validate(args)
    options = deployment_options(parsed.model, parsed.backpressure_status)
    deployment = serve.deployment(DiffusionServer, name="DiffusionServer", **options)
    return deployment.bind(parsed.model.model_dump(mode="json"), parsed.limits.model_dump(mode="json"))
