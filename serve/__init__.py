"""Ray Serve applications and engines, and the models they serve."""

from serve.demo import DEMO_LLM_ENGINE_KWARGS, demo_registry, load_registry
from serve.demo_models import TINY_LLAMA, TINY_SD, TINY_VLM, build_demo_models
from serve.registry import ModelKind, ModelRegistry, ModelSpec

__all__ = [
    "DEMO_LLM_ENGINE_KWARGS",
    "TINY_LLAMA",
    "TINY_SD",
    "TINY_VLM",
    "ModelKind",
    "ModelRegistry",
    "ModelSpec",
    "build_demo_models",
    "demo_registry",
    "load_registry",
]
