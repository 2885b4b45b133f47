"""The restyle chunk stages: decode at the working size, render on the diffusion engine, encode.

Frames travel between them in Ray's object store, a chunk at a time; what
reaches the driver is an `EncodedChunk`: the stored chunk file, a checksum
per rendered frame and the frame-to-frame differences the flicker figure is
made of. The render stage holds the engine a Serve replica holds
(``DiffusersEngine.from_spec``), so a frame renders the same in a job as
through the API, and is batch-invariant: the chunk layout never changes a frame.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.stages.base import Resources, Stage
from pipelines.stages.backend import process_one
from pipelines.stages.media.access import media_path
from pipelines.stages.media.frames import decode_frames, encode_chunk, frame_checksum
from pipelines.stages.models import model_resources
from pipelines.stages.payloads import Failed
from pipelines.stages.restyle.plan import RenderChunk
from pipelines.stages.worker import worker_id
from serve.registry import ModelSpec

if TYPE_CHECKING:
    from farm.runner.objects import ObjectHandle, StoredFile
    from serve.diffusion.engine import DiffusersEngine


@dataclass(frozen=True)
class DecodedChunk:
    chunk: RenderChunk
    frames: np.ndarray  # (N, H, W, 3) uint8 at the working size
    anchor: np.ndarray | None  # (H, W, 3) the shot's anchor frame, for consistency "anchor" only
    source_diffs: tuple[float, ...]  # mean |frame[i+1] - frame[i]| within the chunk


@dataclass(frozen=True)
class RenderedChunk:
    chunk: RenderChunk
    frames: np.ndarray
    source_diffs: tuple[float, ...]
    worker: str  # node:pid of the engine that rendered it (`pipelines.stages.worker`)
    render_s: float


@dataclass(frozen=True)
class EncodedChunk:
    chunk: RenderChunk
    stored: StoredFile  # the chunk's MP4 (a PNG for a preview), not yet an asset
    checksums: tuple[str, ...]  # per rendered frame, before scaling and encoding
    source_diffs: tuple[float, ...]
    output_diffs: tuple[float, ...]
    worker: str
    render_s: float
    meta: dict[str, Any] = field(default_factory=dict)


def frame_diffs(frames: np.ndarray) -> tuple[float, ...]:
    """Mean absolute difference of each consecutive pair of frames (0-255 levels)."""
    if len(frames) < 2:
        return ()
    as_int = frames.astype(np.int16)
    return tuple(float(np.abs(as_int[i + 1] - as_int[i]).mean()) for i in range(len(frames) - 1))


class DecodeChunk(Stage[RenderChunk, DecodedChunk]):
    """A chunk's frames and its anchor, decoded straight to the working size."""

    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle | None) -> None:
        self.objects = objects

    def process(self, item: RenderChunk) -> list[DecodedChunk]:
        wanted = list(range(item.start, item.end))
        needs_anchor = item.look.consistency == "anchor"
        extra = needs_anchor and item.anchor not in wanted  # decoded only when rendering attends to it
        decoded = decode_frames(media_path(item.source, self.objects), [*wanted, item.anchor] if extra else wanted, item.working)
        frames = decoded[:len(wanted)]
        anchor = None if not needs_anchor else decoded[-1] if extra else decoded[wanted.index(item.anchor)]
        return [DecodedChunk(item, frames, anchor, frame_diffs(frames))]


class RenderFrames(Stage[DecodedChunk, RenderedChunk]):
    """Holds one diffusion engine; renders each chunk's frames image-to-image, anchored to their shot."""

    def __init__(self, spec: ModelSpec) -> None:
        if spec.kind != "diffusion":
            raise ValueError(f"{spec.name} is a {spec.kind} model, not a diffusion model")
        self.spec = spec
        self.resources = model_resources(spec)
        self._engine: DiffusersEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None, "_loop": None}  # each worker loads its own

    def setup(self) -> None:
        from serve.diffusion.engine import DiffusersEngine

        self._loop = asyncio.new_event_loop()
        self._engine = DiffusersEngine.from_spec(self.spec)
        self._loop.run_until_complete(self._engine.start())

    def process_batch(self, items: list[Any]) -> list[Any]:
        """The pool's entry: failures of earlier stages pass through, a failing chunk fails its video only."""
        return [out for item in items for out in process_one(self, item)]

    def process(self, item: DecodedChunk) -> list[RenderedChunk]:
        from serve.diffusion.protocol import FrameBatch, FrameJob

        assert self._engine is not None and self._loop is not None, "setup() first"
        c, look = item.chunk, item.chunk.look
        anchored = item.anchor is not None
        anchors = [FrameJob(image=item.anchor, prompt=c.prompt, seed=c.anchor_seed, negative_prompt=look.negative_prompt)] if anchored else []
        per_call = self.spec.max_batch_size - (1 if anchored else 0)
        if per_call < 1:
            raise ValueError(f"model {self.spec.name}: max_batch_size {self.spec.max_batch_size} leaves no room beside the anchor")
        began = time.perf_counter()
        out: list[np.ndarray] = []
        for first in range(0, c.frames, per_call):
            jobs = [
                FrameJob(image=item.frames[i], prompt=c.prompt, seed=c.seeds[i], negative_prompt=look.negative_prompt,
                         anchor=0 if anchored else None)
                for i in range(first, min(first + per_call, c.frames))
            ]
            batch = FrameBatch(frames=jobs, anchors=anchors, steps=look.steps, strength=look.strength,
                               guidance_scale=look.guidance_scale, consistency=look.consistency)
            rendered, _ = self._loop.run_until_complete(self._engine.restyle(batch))
            out.extend(rendered)
        return [RenderedChunk(c, np.stack(out), item.source_diffs, worker_id(), time.perf_counter() - began)]


class EncodeChunk(Stage[RenderedChunk, EncodedChunk]):
    """Checksums and differences of the rendered frames, then the chunk as H.264 in the source's clock (a PNG for a preview)."""

    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle) -> None:
        self.objects = objects

    def process(self, item: RenderedChunk) -> list[EncodedChunk]:
        c = item.chunk
        checksums = tuple(frame_checksum(f) for f in item.frames)
        diffs = frame_diffs(item.frames)
        if c.preview:
            from PIL import Image

            image = Image.fromarray(item.frames[0])
            if image.size != c.output:
                image = image.resize(c.output, Image.Resampling.BICUBIC)
            with tempfile.TemporaryDirectory(prefix="restyle-") as tmp:
                path = Path(tmp) / "frame.png"
                image.save(path, "PNG")
                stored = self.objects.put(f"{c.source.stem}.restyle-preview-{c.shot:03d}.png", path)
        else:
            with tempfile.TemporaryDirectory(prefix="restyle-") as tmp:
                path = encode_chunk(item.frames, c.pts, c.video.time_base, c.video.rate, Path(tmp) / "chunk.mp4",
                                    size=c.output, crf=c.look.crf, preset=c.look.preset, rotation=c.video.rotation)
                stored = self.objects.put(f"{c.source.stem}.restyle-{c.part}.mp4", path)
        return [EncodedChunk(c, stored, checksums, item.source_diffs, diffs, item.worker, item.render_s)]

