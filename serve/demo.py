"""The registry a farm runs with: the configured file, else the tiny demo models.

The demo entries live here, beside the registry rather than in it, so the
registry knows nothing of any particular model; :mod:`serve.demo_models`
builds their weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serve.demo_models import LLM_MAX_MODEL_LEN, TINY_LLAMA, TINY_SD, TINY_VLM
from serve.registry import ModelRegistry, ModelSpec

# vLLM engine arguments that start tiny-llama on a small CPU box in ~30 s
# (tests/serve/test_demo_models.py runs vLLM with exactly these).
DEMO_LLM_ENGINE_KWARGS: dict[str, Any] = {
    "max_model_len": LLM_MAX_MODEL_LEN,
    "max_num_seqs": 8,
    # torch.compile/inductor adds ~20 s on two cores and buys nothing here.
    "enforce_eager": True,
    # Without an explicit size vLLM's CPU worker wants 90% of RAM free; this
    # is the engine-argument form of VLLM_CPU_KVCACHE_SPACE (which, if set,
    # overrides it). tiny-llama needs 1 KiB per token, so 256 MiB is plenty.
    "kv_cache_memory_bytes": 256 << 20,
}


def demo_registry(cache_dir: Path) -> ModelRegistry:
    """The demo models under ``cache_dir`` (build them with ``build_demo_models``)."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    return ModelRegistry.from_specs(
        [
            ModelSpec(name=TINY_LLAMA, kind="llm", source=str(cache_dir / TINY_LLAMA), engine_kwargs=dict(DEMO_LLM_ENGINE_KWARGS)),
            ModelSpec(name=TINY_SD, kind="diffusion", source=str(cache_dir / TINY_SD)),
            # vLLM's multimodal models need torchvision, which cannot load beside CPU torch: transformers runs it.
            ModelSpec(name=TINY_VLM, kind="vlm", runtime="transformers", source=str(cache_dir / TINY_VLM), cpus=0.5),
        ]
    )


def load_registry(registry_file: Path | str | None, cache_dir: Path) -> ModelRegistry:
    """``registry_file`` if one is set, else the demo models under ``cache_dir``.

    A registry file that is set but missing is an error, not a silent
    fall-back to the demo models.
    """
    if registry_file is None:
        return demo_registry(cache_dir)
    if not Path(registry_file).is_file():
        raise FileNotFoundError(f"model registry file not found: {registry_file}")
    return ModelRegistry.from_yaml(registry_file)
