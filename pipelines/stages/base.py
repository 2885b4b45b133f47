"""A typed stage: the resources it needs, a one-time setup, and a per-item step.

Stages know nothing of Ray: `pipelines.stages.backend` turns one into a Ray
Data ``map_batches`` call, and tests call ``setup()`` and ``process()``
directly. A stage that cannot handle an input raises `MediaError` (or any
exception); the backend turns that into a `Failed` payload for that input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Resources:
    """What one running copy of a stage holds on its node: Ray's logical CPUs and GPUs, and which GPU."""

    cpus: float = 1.0
    gpus: float = 0.0
    accelerator_type: str | None = None  # Ray's accelerator type ("L4", "A10G"): places GPU stages on the right nodes


class MediaError(Exception):
    """An input is unusable (corrupt, truncated, not a video): fails that input, not the job."""


class Stage(ABC, Generic[In, Out]):
    """One pipeline step. Instances are pickled to workers, so keep them to plain config."""

    resources: Resources = Resources()

    @property
    def name(self) -> str:
        return type(self).__name__

    def setup(self) -> None:
        """Runs once per worker process before the first item: open stores, load models."""

    @abstractmethod
    def process(self, item: In) -> list[Out]:
        """Turn one input into zero or more outputs."""
