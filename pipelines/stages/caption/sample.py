"""Frames sampled per shot, decoded once per video, each shot becoming one request to the vision-language model.

A worker opens a video once and decodes every sampled frame of all its
shots in one pass (decord seeks to each), scaled inside FFmpeg to a small
working size, turned upright, and emits one `CaptionTask` per shot with its
rendered prompt. Only a few small frames per shot travel on. A video whose
shots come from a ``shots.json`` object (`GivenShots`) is probed and its
list checked by the same worker, so no separate pass over the videos is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from farm.runner.objects import ObjectHandle
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.media.access import media_path
from pipelines.stages.media.frames import decode_frames, working_size
from pipelines.stages.media.probe import probe
from pipelines.stages.payloads import Shot, Source, Video
from pipelines.stages.shots.given import read_shots


@dataclass(frozen=True)
class CaptionShots:
    """One video's shots to caption, and how."""

    video: Video
    shots: tuple[Shot, ...]
    frames_per_shot: int
    short_side: int
    prompt: str  # the template; see `render_prompt`
    max_tokens: int

    @property
    def source(self) -> Source:
        return self.video.source


@dataclass(frozen=True)
class GivenShots:
    """A video whose shots are in a `video.shots` document (``shots_key``): probed and checked on the worker."""

    source: Source
    shots_key: str
    shots_name: str
    frames_per_shot: int
    short_side: int
    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class CaptionTask:
    """One shot for the model: its sampled frames (upright RGB) and the prompt made for it."""

    video: Video
    shot: Shot
    shots: int  # how many shots the video has
    frames: tuple[int, ...]
    images: np.ndarray = field(compare=False)  # (n, H, W, 3) uint8
    prompt: str
    max_tokens: int

    @property
    def source(self) -> Source:
        return self.video.source

    def messages(self) -> list[dict]:
        """One user turn: the frames first, then the question (OpenAI part types, images as placeholders)."""
        return [{"role": "user", "content": [*({"type": "image"} for _ in self.frames), {"type": "text", "text": self.prompt}]}]


def sample_frames(shot: Shot, count: int) -> tuple[int, ...]:
    """``count`` frames spread evenly over the shot, each the middle of its share (one: the middle frame)."""
    n = max(1, min(count, shot.frames))
    return tuple(sorted({shot.start + (2 * j + 1) * shot.frames // (2 * n) for j in range(n)}))


def render_prompt(template: str, video: Video, shot: Shot, shots: int) -> str:
    """The template with the shot's fields filled in (the spec checked that it names no others)."""
    return template.format(video=video.source.name, shot=shot.index, shots=shots, start=round(shot.start_time, 3),
                           end=round(shot.end_time, 3), duration=round(shot.end_time - shot.start_time, 3))


class SampleShotFrames(Stage[CaptionShots | GivenShots, CaptionTask]):
    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle | None) -> None:
        self.objects = objects

    def given(self, item: GivenShots) -> CaptionShots:
        """The video probed (never decoded for detection) and the document's shots, checked against it."""
        if self.objects is None:
            raise RuntimeError("reading a shots document needs an object handle")
        probed = probe(media_path(item.source, self.objects), item.source)
        try:
            shots = read_shots(b"".join(self.objects.get(item.shots_key)), item.shots_name, probed)
        except ValueError as exc:
            raise MediaError(f"shots_asset_ids[{item.source.index}]: {exc}") from None
        return CaptionShots(probed.video, tuple(shots), item.frames_per_shot, item.short_side, item.prompt, item.max_tokens)

    def process(self, item: CaptionShots | GivenShots) -> list[CaptionTask]:
        if isinstance(item, GivenShots):
            item = self.given(item)
        video = item.video
        picks = [sample_frames(s, item.frames_per_shot) for s in item.shots]
        wanted = sorted({f for p in picks for f in p})
        decoded = decode_frames(media_path(item.source, self.objects), wanted, working_size(video.width, video.height, item.short_side))
        if video.rotation % 360:
            decoded = np.ascontiguousarray(np.rot90(decoded, k=(video.rotation // 90) % 4, axes=(1, 2)))
        row = {f: i for i, f in enumerate(wanted)}
        return [
            CaptionTask(video=video, shot=shot, shots=len(item.shots), frames=frames, images=decoded[[row[f] for f in frames]],
                        prompt=render_prompt(item.prompt, video, shot, len(item.shots)), max_tokens=item.max_tokens)
            for shot, frames in zip(item.shots, picks, strict=True)
        ]
