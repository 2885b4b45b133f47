"""A small multi-shot sample video, generated so the demo needs no download.

Each shot is a distinct scene (its own palette and a moving shape) joined by
hard cuts at known frames, with a stereo tone track, so shot detection and
audio handling have ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class SampleVideo:
    path: Path
    fps: int
    frames: int
    cuts: tuple[int, ...]  # first frame of every shot after the first


def make_sample_video(
    path: Path, *, shot_lengths: tuple[int, ...] = (36, 30, 42, 24), fps: int = 24,
    size: tuple[int, int] = (320, 180), audio: bool = True,
) -> SampleVideo:
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(7)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        vstream = out.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "veryfast", "crf": "23", "g": str(fps)}
        astream = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        yy, xx = np.mgrid[0:height, 0:width]
        frame_index = 0
        for shot, length in enumerate(shot_lengths):
            base = rng.integers(0, 256, size=3)
            tilt = rng.uniform(-1, 1, size=3)
            for i in range(length):
                grad = (xx * tilt[0] + yy * tilt[1]) / max(width, height) * 120
                img = np.clip(base[None, None, :] + grad[..., None] * np.array([1, 0.6, -0.8]), 0, 255)
                cx = int((i / max(1, length - 1)) * (width - 40))
                cy = height // 2 - 20 + int(20 * np.sin(i / 4 + shot))
                img[cy : cy + 40, cx : cx + 40] = 255 - base
                frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
                frame.pts = frame_index
                frame.time_base = Fraction(1, fps)
                out.mux(vstream.encode(frame))
                frame_index += 1
        out.mux(vstream.encode())
        if astream is not None:
            _write_tone(out, astream, frame_index / fps)
    tmp.replace(path)
    cuts = tuple(int(x) for x in np.cumsum(shot_lengths)[:-1])
    return SampleVideo(path=path, fps=fps, frames=sum(shot_lengths), cuts=cuts)


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate, block = 48000, 1024
    total = int(seconds * rate)
    for start in range(0, total, block):
        n = min(block, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        tone = 0.2 * np.sin(2 * np.pi * 440 * t)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


DEFAULT_SHOTS = (36, 30, 42, 24)


def sample_video(path: Path) -> SampleVideo:
    """The demo's sample, made once and then reused (so re-runs deduplicate)."""
    if path.exists():
        cuts = tuple(int(x) for x in np.cumsum(DEFAULT_SHOTS)[:-1])
        return SampleVideo(path=path, fps=24, frames=sum(DEFAULT_SHOTS), cuts=cuts)
    return make_sample_video(path, shot_lengths=DEFAULT_SHOTS)
