"""Multi-shot videos with known boundaries, made in code: ground truth for tests, benchmarks and the demo.

Every shot has its own hue, a textured background that pans, and a moving
square (or none of that motion, for a static shot); shots meet with hard
cuts or fade through black; a shot may carry a counter (large digits of a
random colour redrawn every frame) that changes as much each frame as a
quiet shot does at a cut. Optional film grain keeps the encoder and the
decoder honest at benchmark sizes. Frames are cut from one precomputed
canvas per shot, so a 1080p video costs little more than its encoding.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GOLDEN = 0.381966  # hue step between shots: neighbours never look alike
HUES = (0.08, 0.92)  # away from red, where hue wraps from 179 to 0 and scores jump


@dataclass(frozen=True)
class ShotSpec:
    frames: int
    static: bool = False
    fade_in: int = 0  # frames rising from black at the start of the shot
    fade_out: int = 0  # frames falling to black at its end
    counter: bool = False  # random digits over most of the picture, new every frame


@dataclass(frozen=True)
class SyntheticVideo:
    path: Path
    fps: int
    size: tuple[int, int]
    shots: tuple[ShotSpec, ...]
    audio: bool

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.shots)

    @property
    def starts(self) -> tuple[int, ...]:
        """First frame of every shot after the first."""
        return tuple(int(x) for x in np.cumsum([s.frames for s in self.shots])[:-1])

    @property
    def cuts(self) -> tuple[int, ...]:
        """Boundaries that are hard cuts."""
        return tuple(b for b, fade in zip(self.starts, self._faded()) if not fade)

    @property
    def fades(self) -> tuple[int, ...]:
        """Boundaries that fade through black (the first frame of the incoming shot)."""
        return tuple(b for b, fade in zip(self.starts, self._faded()) if fade)

    def _faded(self) -> list[bool]:
        return [bool(a.fade_out or b.fade_in) for a, b in zip(self.shots, self.shots[1:])]


def make_video(
    path: Path, shots: Sequence[ShotSpec | int], *, size: tuple[int, int] = (320, 180), fps: int = 24,
    audio: bool = False, grain: float = 0.0, seed: int = 0, preset: str = "veryfast", crf: int = 23, gop: int | None = None,
) -> SyntheticVideo:
    specs = tuple(s if isinstance(s, ShotSpec) else ShotSpec(s) for s in shots)
    width, height = size
    rng = np.random.default_rng(seed)
    noise = [np.round(rng.normal(0, grain, (height, width, 1))).astype(np.int16) for _ in range(7)] if grain else []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part" + path.suffix)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset, "crf": str(crf), **({"g": str(gop)} if gop else {})}
        tones = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        index = 0
        for k, spec in enumerate(specs):
            for image in _shot_frames(k, spec, size, rng, noise):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, fps)
                out.mux(stream.encode(frame))
                index += 1
        out.mux(stream.encode())
        if tones is not None:
            _write_tones(out, tones, specs, fps)
    tmp.replace(path)
    return SyntheticVideo(path, fps, size, specs, audio)


def _shot_frames(k: int, spec: ShotSpec, size: tuple[int, int], rng: np.random.Generator, noise: list[np.ndarray]):  # type: ignore[no-untyped-def]
    width, height = size
    hue = HUES[0] + (HUES[1] - HUES[0]) * ((k * GOLDEN) % 1.0)
    sat, val = (0.55, 0.85) if k % 2 == 0 else (0.8, 0.6)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32) * 255
    other = np.array(colorsys.hsv_to_rgb(hue, sat * 0.7, val * 0.55), np.float32) * 255
    speed = 0 if spec.static else int(rng.integers(1, 4))
    span = width + speed * spec.frames + 1
    yy, xx = np.mgrid[0:height, 0:span].astype(np.float32)
    fx, fy, phase = rng.uniform(0.01, 0.04), rng.uniform(0.01, 0.05), rng.uniform(0, 6.28)
    mix = (0.5 + 0.25 * np.sin(xx * fx + phase) + 0.25 * np.sin(yy * fy + xx * fx * 0.3))[..., None]
    canvas = np.clip(base * mix + other * (1 - mix), 0, 255).astype(np.uint8)
    box = max(8, height // 5)
    square = (255 - base).astype(np.uint8)
    for i in range(spec.frames):
        x0 = i * speed
        img = canvas[:, x0 : x0 + width].copy()  # uint8 throughout: a 1080p frame costs a few ms
        if not spec.static:
            cx = int((i / max(1, spec.frames - 1)) * (width - box))
            cy = int((height - box) * (0.5 + 0.3 * np.sin(i / 5 + k)))
            img[cy : cy + box, cx : cx + box] = square
        if spec.counter:
            colour = np.array(colorsys.hsv_to_rgb(float(rng.random()), 1.0, 1.0), np.float32) * 255
            _draw_number(img, int(rng.integers(0, 10_000)), colour.astype(np.uint8))
        if noise:
            img = np.clip(img + noise[(i + k) % len(noise)], 0, 255).astype(np.uint8)
        level = _fade_level(i, spec)
        if level < 1:
            img = (img * np.float32(level)).astype(np.uint8)
        yield img


SEGMENTS = ("abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg")


def _draw_number(img: np.ndarray, number: int, colour: np.ndarray, digits: int = 4) -> None:
    """``number`` as seven-segment digits filling the picture's width and most of its height."""
    height, width = img.shape[:2]
    cell, tall = width // digits, int(height * 0.6)
    top, stroke = (height - tall) // 2, max(2, cell // 6)
    wide, mid = cell - 2 * stroke, top + tall // 2
    for k, ch in enumerate(str(number).zfill(digits)[-digits:]):
        x = k * cell + stroke
        boxes = {"a": (top, top + stroke, x, x + wide), "g": (mid - stroke // 2, mid + stroke - stroke // 2, x, x + wide),
                 "d": (top + tall - stroke, top + tall, x, x + wide), "f": (top, mid, x, x + stroke),
                 "b": (top, mid, x + wide - stroke, x + wide), "e": (mid, top + tall, x, x + stroke),
                 "c": (mid, top + tall, x + wide - stroke, x + wide)}
        for seg in SEGMENTS[int(ch)]:
            y0, y1, x0, x1 = boxes[seg]
            img[y0:y1, x0:x1] = colour


def _fade_level(i: int, spec: ShotSpec) -> float:
    level = 1.0
    if spec.fade_in and i < spec.fade_in:
        level = min(level, i / spec.fade_in)
    if spec.fade_out and i >= spec.frames - spec.fade_out:
        level = min(level, (spec.frames - 1 - i) / spec.fade_out)
    return level


def _write_tones(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, specs: Sequence[ShotSpec], fps: int) -> None:
    """A stereo tone whose pitch changes with the shot, so clips carry recognisable audio."""
    rate = stream.rate
    bounds = np.cumsum([0, *[s.frames for s in specs]]) / fps
    total, block = int(bounds[-1] * rate), 1024
    for start in range(0, total, block):
        t = np.arange(start, min(total, start + block)) / rate
        shot = np.searchsorted(bounds, t, side="right") - 1
        tone = (0.2 * np.sin(2 * np.pi * (220 * (1 + shot % 5)) * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())
