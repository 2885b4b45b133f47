"""Per-shot outputs: keyframe images and a frame-accurate clip, from one decode of the shot.

Workers cut the shot (`pipelines.stages.media.segment`), then store the clip
and images through the door's object handle; the driver records them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from farm.runner.objects import ObjectHandle, StoredFile
from pipelines.stages.base import Resources, Stage
from pipelines.stages.media.access import media_path
from pipelines.stages.media.segment import cut, jpeg, thumbnail
from pipelines.stages.payloads import RenderedShot, ShotTask
from pipelines.stages.worker import worker_id


class RenderShot(Stage[ShotTask, RenderedShot]):
    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle, *, crf: int = 20, preset: str = "veryfast", jpeg_quality: int = 90) -> None:
        self.objects = objects
        self.crf, self.preset, self.quality = crf, preset, jpeg_quality

    def process(self, item: ShotTask) -> list[RenderedShot]:
        path = media_path(item.video.source, self.objects)
        stem, n = item.video.source.stem, f"{item.shot.index:03d}"
        with tempfile.TemporaryDirectory(prefix="farm-shot-") as tmp:
            clip = Path(tmp) / "clip.mp4" if item.clip else None
            done = cut(path, item.segment, clip, crf=self.crf, preset=self.preset)
            stored_clip = self.objects.put(f"{stem}.shot-{n}.mp4", clip) if clip is not None else None
        stored: list[StoredFile] = []
        if item.keyframes:
            for j, image in enumerate(done.images):
                suffix = "" if j == 0 else f"-{j + 1}"
                stored.append(self.objects.put(f"{stem}.shot-{n}{suffix}.jpg", jpeg(image, self.quality)))
        thumb = jpeg(thumbnail(done.images[0]), 85) if done.images else None
        return [RenderedShot(item, tuple(stored), stored_clip, thumb, done.frames, done.audio, worker_id())]
