"""Keyframes for the shots of many stories: the shared diffusion stage, batched across stories, per-shot seeds.

The pool hands an actor a batch of shots from whichever stories are next;
the diffusion stage renders every image of the batch together
(``max_batch_size`` per engine call). Each result carries the figures of the
call it came from (images, engine calls, stories), so the job can report how
well keyframes were batched.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.stages.base import Resources
from pipelines.stages.models.diffusion import DiffusionStage, ImageTask
from serve.diffusion.protocol import ImageRequest
from serve.registry import ModelSpec

if TYPE_CHECKING:
    from farm.runner.objects import ObjectHandle, StoredFile

MAX_SEED = 2**32 - 1


def shot_seed(seed: int, stem: str, shot: int) -> int:
    """A shot's first keyframe seed (variants follow it): fixed by the job's seed, the story and the shot."""
    digest = hashlib.sha256(f"{seed}:{stem}:shot-{shot}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (MAX_SEED + 1)


def keyframe_prompt(visual: str, camera: str, style: str) -> str:
    return ", ".join(p for p in (visual, f"{camera} shot" if camera != "static" else "", style.strip()) if p) or "an empty scene"


@dataclass(frozen=True)
class Look:
    """How every keyframe of the job is rendered."""

    width: int
    height: int
    steps: int
    guidance_scale: float
    negative_prompt: str | None = None


@dataclass(frozen=True)
class KeyframeTask:
    """One shot's keyframe(s): story item, output stem, shot number, prompt, first seed, how many variants."""

    item: int
    stem: str
    shot: int
    prompt: str
    seed: int
    variants: int = 1

    @property
    def name(self) -> str:
        return f"{self.stem}.shot-{self.shot:02d}"


@dataclass(frozen=True)
class CallFigures:
    """One batch an actor rendered: its images, the engine calls they took, the stories they came from."""

    batch: str  # unique per actor batch: every shot of the batch carries the same figures
    images: int
    engine_calls: int
    stories: int
    worker: str


@dataclass(frozen=True)
class Keyframes:
    """One shot's stored images (variant order), or why it has none."""

    task: KeyframeTask
    stored: list[StoredFile] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    error: str | None = None
    call: CallFigures | None = None


class KeyframeStage:
    """A diffusion stage (the one batch.images uses) turned to shots: text-to-image at the job's look."""

    def __init__(self, spec: ModelSpec, objects: ObjectHandle, look: Look) -> None:
        self.inner = DiffusionStage(spec, objects)
        self.look = look
        self.resources: Resources = self.inner.resources

    def setup(self) -> None:
        self.inner.setup()

    def request(self, task: KeyframeTask) -> ImageTask:
        look = self.look
        return ImageTask(task.item, task.name, ImageRequest(
            prompt=task.prompt, negative_prompt=look.negative_prompt, n=task.variants, width=look.width, height=look.height,
            steps=look.steps, guidance_scale=look.guidance_scale, seed=task.seed))

    def process_batch(self, tasks: list[KeyframeTask]) -> list[Keyframes]:
        rendered = self.inner.process_batch([self.request(t) for t in tasks])
        images = sum(t.variants for t in tasks)
        # every keyframe of a job shares one batch key (size, steps, guidance), so the
        # stage renders them max_batch_size per engine call
        call = CallFigures(uuid.uuid4().hex, images, math.ceil(images / self.inner.spec.max_batch_size), len({t.item for t in tasks}), f"{socket.gethostname()}:{os.getpid()}")
        return [Keyframes(t, r.stored, r.seeds, r.error, call) for t, r in zip(tasks, rendered, strict=True)]
