"""What flows between stages: small, picklable dataclasses, never whole videos.

A payload names where its media lives (`Source`) and carries only what the
next stage needs: frame ranges, per-frame scores, a shot's timestamps. Any
stage may emit `Failed` instead, which later stages pass through untouched,
so one bad input becomes one failed item, not a failed job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np

from farm.runner.objects import StoredFile


@dataclass(frozen=True)
class Source:
    """Where a worker finds one input video: a local file or an object-store key."""

    index: int  # the job item this video is
    name: str  # display name: the asset's name or the file's
    path: str | None = None
    object_key: str | None = None
    asset_id: str | None = None

    @property
    def stem(self) -> str:
        """The name outputs are called after: ``clip.mp4`` → ``clip``."""
        base = self.name.rsplit("/", 1)[-1]
        return base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base


@dataclass(frozen=True)
class Video:
    """What the probe learned about a video; frame numbers count from 0 in presentation order."""

    source: Source
    frames: int
    fps: float  # average frame rate
    rate: Fraction  # the same, exact, for encoders and timecodes
    variable_fps: bool
    width: int
    height: int
    duration: float  # seconds, first frame to the end of the last
    codec: str
    pix_fmt: str
    rotation: int  # degrees counterclockwise to display upright (PyAV's convention)
    has_audio: bool
    audio_codec: str | None
    time_base: Fraction  # of the video stream; frame pts are in it


@dataclass(frozen=True)
class Probed:
    """A probed video with its frame index: every frame's pts and the keyframes' numbers."""

    video: Video
    frame_pts: np.ndarray  # int64, sorted: frame i starts at frame_pts[i] * time_base
    keyframes: np.ndarray  # int64 frame numbers where decoding can start

    def times(self) -> np.ndarray:
        """Seconds from the first frame, one per frame, plus the end of the last."""
        tb = float(self.video.time_base)
        start = (self.frame_pts - self.frame_pts[0]) * tb
        return np.append(start, self.video.duration).astype(np.float64)

    def pts_range(self, start: int, end: int) -> np.ndarray:
        """Pts of frames [start, end), then the pts where frame ``end`` starts (or the video ends)."""
        if end < len(self.frame_pts):
            stop = int(self.frame_pts[end])
        else:
            stop = int(self.frame_pts[0]) + round(Fraction(self.video.duration) / self.video.time_base)
        return np.append(self.frame_pts[start:end], stop).astype(np.int64)


@dataclass(frozen=True)
class Chunk:
    """Frames [start, end) of a video, decoded by one worker."""

    video: Video
    start: int
    end: int
    pts: np.ndarray | None = field(default=None, compare=False, repr=False)  # the frames' pts, where a decoder seeks by time

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ChunkFeatures:
    """Per-frame measurements of one chunk; stitched with its neighbours on the driver.

    ``scores[i]`` is the change from frame ``start+i-1`` to ``start+i``; the
    first is NaN because the previous frame belongs to the previous chunk, so
    the chunk hands over its first and last downscaled frames instead.
    """

    chunk: Chunk
    scores: np.ndarray  # float32, one per frame
    intensity: np.ndarray  # float32 mean of R, G, B (0-255), one per frame
    first: np.ndarray  # the first frame's features (HSV, downscaled)
    last: np.ndarray
    decode_s: float = 0.0  # where the worker's time went, for profiles: decoding and scaling,
    compute_s: float = 0.0  # the scores,
    cpu_s: float = 0.0  # and the CPU time the worker process used for the chunk


TransitionKind = Literal["cut", "fade"]


@dataclass(frozen=True)
class Transition:
    """Where one shot ends and the next begins; a fade spans frames [start, end)."""

    frame: int  # first frame of the new shot
    kind: TransitionKind
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class Shot:
    index: int  # from 1, as in the output names (shot-001)
    start: int
    end: int  # exclusive
    start_time: float
    end_time: float
    keyframes: tuple[int, ...]
    transition_in: TransitionKind | None = None

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) of a video to decode once: some kept as images, all optionally re-encoded."""

    video: Video
    start: int
    end: int
    pts: np.ndarray  # the frames' pts, plus where frame ``end`` starts (or the video ends) as the last entry
    images: tuple[int, ...] = ()  # frame numbers to keep as images
    label: str = "segment"  # what error messages call it ("shot 3")

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ShotTask:
    """Render one shot: its keyframe images and/or its clip (stored where the stage's object handle puts them)."""

    video: Video
    shot: Shot
    pts: np.ndarray  # the shot's frame pts, plus the next frame's (or the end) as the last entry
    keyframes: bool
    clip: bool

    @property
    def segment(self) -> Segment:
        return Segment(self.video, self.shot.start, self.shot.end, self.pts, self.shot.keyframes, f"shot {self.shot.index}")


@dataclass(frozen=True)
class RenderedShot:
    task: ShotTask
    keyframes: tuple[StoredFile, ...]
    clip: StoredFile | None
    thumbnail: bytes | None  # small JPEG of the first keyframe, for the contact sheet
    clip_frames: int = 0
    clip_has_audio: bool = False
    worker: str = ""  # node:pid that rendered it (`pipelines.stages.worker`)


@dataclass(frozen=True)
class Failed:
    """An input that could not be processed, with a message a user can act on."""

    source: Source
    stage: str
    message: str
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.source.name}: {self.message}"
