"""The render plan: shots cut into frame-range chunks that never cross a cut, each carrying its shot's anchor.

Everything a worker needs to render a chunk travels in the chunk: frame
numbers and timestamps, the working and output sizes, the prompt and a seed
per frame, the anchor frame with its seed. Chunks are therefore independent:
any worker renders any chunk in any order, and a retried job re-renders
exactly the chunks it has no record of.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipelines.stages.payloads import Probed, Shot, Source, Video

SeedPolicy = Literal["per_shot", "per_video", "per_frame"]


@dataclass(frozen=True)
class Look:
    """How frames are rendered: the same for every chunk of a job."""

    steps: int
    strength: float
    guidance_scale: float
    consistency: Literal["none", "anchor"]
    negative_prompt: str | None
    crf: int
    preset: str


@dataclass(frozen=True)
class RenderChunk:
    """Frames [start, end) of one shot of one video, and how to render them."""

    video: Video
    shot: int  # shot index, from 1
    start: int
    end: int
    pts: np.ndarray  # the frames' pts, plus where frame ``end`` starts (or the video ends)
    seeds: tuple[int, ...]  # one per frame
    prompt: str
    anchor: int  # frame number of the shot's anchor (its keyframe)
    anchor_seed: int
    working: tuple[int, int]  # (width, height) the model renders at
    output: tuple[int, int]  # (width, height) of the result
    look: Look
    preview: bool = False  # render the anchor alone, as a still

    @property
    def source(self) -> Source:
        return self.video.source

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def part(self) -> str:
        """The chunk's name in the job's part records: stable across attempts of the same job."""
        return f"{'preview' if self.preview else 'chunk'}-{self.start:07d}-{self.end:07d}"


def seed_of(seed: int, policy: SeedPolicy, shot: int, frame: int) -> int:
    """The noise seed of one frame: shared by a shot, by the video, or new each frame."""
    if policy == "per_video":
        return seed
    key = f"{seed}:{policy}:{shot if policy == 'per_shot' else frame}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "big")


def anchor_of(shot: Shot) -> int:
    """A shot's anchor: its first keyframe (the middle frame), which the contact sheet also shows."""
    return shot.keyframes[0] if shot.keyframes else (shot.start + shot.end - 1) // 2


def plan(probed: Probed, shots: Sequence[Shot], *, chunk_size: int, prompt: str, shot_prompts: Mapping[int, str],
         seed: int, seed_policy: SeedPolicy, working: tuple[int, int], output: tuple[int, int], look: Look,
         preview: bool = False) -> list[RenderChunk]:
    """The chunks of one video: each shot cut every ``chunk_size`` frames (or its anchor alone, for a preview)."""
    chunks: list[RenderChunk] = []
    for shot in shots:
        anchor = anchor_of(shot)
        anchor_seed = seed_of(seed, seed_policy, shot.index, anchor)
        text = shot_prompts.get(shot.index, prompt)
        ranges = [(anchor, anchor + 1)] if preview else [(a, min(a + chunk_size, shot.end)) for a in range(shot.start, shot.end, chunk_size)]
        for start, end in ranges:
            chunks.append(RenderChunk(
                video=probed.video, shot=shot.index, start=start, end=end, pts=probed.pts_range(start, end),
                seeds=tuple(seed_of(seed, seed_policy, shot.index, f) for f in range(start, end)), prompt=text,
                anchor=anchor, anchor_seed=anchor_seed, working=working, output=output, look=look, preview=preview,
            ))
    return chunks
