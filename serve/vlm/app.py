"""Build one vision-language Serve application (transformers runtime) from a registry entry.

``build_app`` is an application builder, named in a Serve config as
``import_path: serve.vlm.app:build_app`` with the model spec as ``args``,
like the diffusion application; autoscaling, back-pressure and resources
come from the spec through the same options.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from ray.serve import Application

from serve.diffusion.app import deployment_options
from serve.registry import ModelSpec
from serve.vlm.protocol import VisionLimits


class VisionAppArgs(BaseModel):
    """The ``args`` of a vision-language application in a Serve config."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec
    limits: VisionLimits = VisionLimits()


def build_app(args: dict[str, Any]) -> Application:
    """The application for one vision-language model (``args``: :class:`VisionAppArgs`)."""
    from ray import serve

    from serve.vlm.server import VisionServer

    parsed = VisionAppArgs.model_validate(args)
    if parsed.model.kind != "vlm" or parsed.model.runtime != "transformers":
        raise ValueError(f"{parsed.model.name} is not a vision-language model on the transformers runtime")
    deployment = serve.deployment(VisionServer, name="VisionServer", **deployment_options(parsed.model))
    return deployment.bind(parsed.model.model_dump(mode="json"), parsed.limits.model_dump(mode="json"))
