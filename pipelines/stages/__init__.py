"""The stage library: typed steps with declared resources, payload dataclasses, a Ray Data backend.

A pipeline composes them: ``run_ray(Probe(ctx.objects), sources)`` runs a
stage over items as Ray Data ``map_batches`` tasks; ``run_local`` runs the
same stage in-process. `media` holds what any video kind reuses (probe,
frame-range decode and encode with audio, keyframes, contact sheets,
synthetic test videos); `shots` the shot-detection domain (features,
detectors, shot rendering, shot lists); `models` the stages that hold a
model. Stages reach objects only through the door's `ObjectHandle`.
"""

from pipelines.stages.backend import run_local, run_ray
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.payloads import (
    Chunk, ChunkFeatures, Failed, Probed, Segment, Shot, ShotTask, Source, Transition, Video,
)

__all__ = [
    "Chunk", "ChunkFeatures", "Failed", "MediaError", "Probed", "Resources", "Segment", "Shot", "ShotTask", "Source",
    "Stage", "Transition", "Video", "run_local", "run_ray",
]
