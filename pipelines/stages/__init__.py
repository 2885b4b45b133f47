"""Reusable media stages: typed steps with declared resources, payload dataclasses, a Ray Data backend.

A pipeline composes them: ``run_ray(Probe(settings), sources)`` runs a stage
over items as Ray Data ``map_batches`` tasks; ``run_local`` runs the same
stage in-process. Later video kinds (restyle, caption) reuse probe, split,
features and render as they are.
"""

from pipelines.stages.backend import run_local, run_ray
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.payloads import Chunk, ChunkFeatures, Failed, Probed, Shot, ShotTask, Source, Transition, Video

__all__ = [
    "Chunk", "ChunkFeatures", "Failed", "MediaError", "Probed", "Resources", "Shot", "ShotTask", "Source", "Stage",
    "Transition", "Video", "run_local", "run_ray",
]
