"""Serve deployment options every served model shares: autoscaling and back-pressure.

Read from the model's registry entry, written once for the LLM deployments
(:mod:`serve.llm`) and the diffusion deployments (:mod:`serve.diffusion.app`).
"""

from __future__ import annotations

from typing import Any

from serve.registry import ModelSpec


def scaling_options(spec: ModelSpec) -> dict[str, Any]:
    """``autoscaling_config`` and the per-replica and queue limits of ``spec``'s deployment."""
    return {
        "autoscaling_config": {
            "min_replicas": spec.min_replicas,
            "initial_replicas": max(spec.min_replicas, 1),
            "max_replicas": spec.max_replicas,
            "target_ongoing_requests": spec.target_ongoing_requests,
            "upscale_delay_s": spec.upscale_delay_s,
            "downscale_delay_s": spec.downscale_delay_s,
        },
        "max_ongoing_requests": spec.max_ongoing_requests,
        # Beyond this the caller's handle raises BackPressureError: a 503 at once.
        "max_queued_requests": spec.max_queued_requests,
    }
