"""Stages that hold a model: a diffusion engine, an LLM engine.

Each is built from one entry of the model registry (:mod:`serve.registry`),
the same entry Serve's config is built from, so a model runs with the same
weights, engine arguments and placement online and in batch. What one copy
of the stage holds (CPUs, GPUs, accelerator type) comes from that entry too.
"""

from __future__ import annotations

from pipelines.stages.base import Resources
from serve.registry import ModelSpec


def model_resources(spec: ModelSpec) -> Resources:
    """What one copy of ``spec``'s engine holds: the registry's CPUs, GPUs and accelerator type."""
    return Resources(cpus=spec.cpus, gpus=spec.gpus, accelerator_type=spec.accelerator_type)
