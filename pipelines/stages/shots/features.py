"""Frame features for cut detection: decode a chunk, sample it small, score frame-to-frame change.

A frame is never scaled or turned into RGB whole (`sampled_frames`): the
features are computed on 64-pixel-wide frames averaged straight from the
decoder's planes, batch by batch, with vectorised numpy. The score is PySceneDetect's
content value: the mean absolute change of hue, saturation and value (in
OpenCV's 8-bit HSV scale), so its thresholds carry over.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from farm.runner.objects import ObjectHandle
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.media.access import media_path
from pipelines.stages.payloads import Chunk, ChunkFeatures

FEATURE_WIDTH = 64  # cut detection needs the picture's layout, not its detail (TransNet uses 48x27)


class FrameFeatures(Stage[Chunk, ChunkFeatures]):
    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle | None = None, *, width: int = FEATURE_WIDTH, batch: int = 64) -> None:
        self.objects = objects
        self.width, self.batch = width, batch

    def process(self, item: Chunk) -> list[ChunkFeatures]:
        began, cpu = time.perf_counter(), time.process_time()
        path = media_path(item.video.source, self.objects)
        size = feature_size(item.video.width, item.video.height, self.width)
        scores: list[np.ndarray] = []
        intensity: list[np.ndarray] = []
        first = prev = None
        compute = 0.0
        for rgb in sampled_frames(path, item, size, self.batch):
            t = time.perf_counter()
            hsv = to_hsv(rgb)
            intensity.append(rgb.reshape(len(rgb), -1).mean(axis=1, dtype=np.float32))
            scores.append(frame_deltas(hsv, prev))
            first = hsv[0] if first is None else first
            prev = hsv[-1]
            compute += time.perf_counter() - t
        assert first is not None and prev is not None
        decode = time.perf_counter() - began - compute
        return [ChunkFeatures(item, np.concatenate(scores), np.concatenate(intensity), first, prev,
                              decode, compute, time.process_time() - cpu)]


def sampled_frames(path: Path, chunk: Chunk, size: tuple[int, int], batch: int) -> Iterator[np.ndarray]:
    """The chunk's frames as small RGB images, ``batch`` at a time, in frame order.

    Frames are never scaled or converted whole: per frame only the few
    samples the small picture needs are copied out of the decoder's planes;
    averaging them into pixels and YUV to RGB run once per batch. The decode
    itself is complete: skipping H.264's deblocking filter saves about 15% on
    grainy footage, but the error it leaves builds up over a GOP and vanishes
    at the next keyframe, which scores as a cut. One decoder thread: one CPU
    per task, chunks run in parallel.
    """
    pts = chunk.pts
    if pts is None or len(pts) != chunk.frames:
        raise ValueError("a chunk for frame features must carry its frames' pts (SplitByFrame sets them)")
    sampler: _Sampler | None = None
    filled = done = 0
    expected = int(pts[0])
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"
            container.seek(int(pts[0]), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                stamp = frame.pts if frame.pts is not None else frame.dts
                if stamp is None or stamp < expected:
                    continue  # the GOP's head before the chunk's first frame
                if stamp != expected:
                    raise MediaError(f"corrupt: frame {chunk.start + done} decoded at pts {stamp}, where the file's index says {expected}")
                if frame.format.name not in ("yuv420p", "yuvj420p"):
                    frame = frame.reformat(format="yuv420p")  # 10-bit, 4:2:2, RGB sources: rare, and dearer
                sampler = sampler or _Sampler(frame, size, min(batch, chunk.frames))
                sampler.take(frame, filled)
                filled, done = filled + 1, done + 1
                if filled == sampler.batch or done == chunk.frames:
                    yield sampler.rgb(filled)
                    filled = 0
                if done == chunk.frames:
                    return
                expected = int(pts[done])
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt: decoding failed in frames {chunk.start}-{chunk.end - 1}: {str(exc)[:200]}") from None
    raise MediaError(f"truncated: frames {chunk.start + done}-{chunk.end - 1} do not decode (the file ends early)")


class _Sampler:
    """Copies, per frame, the plane samples a (W, H) picture needs; per batch, averages them into RGB pixels.

    Each small pixel is the mean of 8 samples of its cell (at a quarter and at
    three quarters down, 4 across), in each of Y, U and V: enough to average
    out film grain, and a fixed cost per frame whatever the resolution.
    """

    def __init__(self, frame: av.VideoFrame, size: tuple[int, int], batch: int) -> None:
        self.size, self.batch = size, batch
        self.full_range = frame.format.name == "yuvj420p" or getattr(frame, "color_range", 0) == 2  # JPEG range
        w, h = size
        self.planes = [_PlaneCut(frame.width, frame.height, w, h), _PlaneCut(frame.width // 2, frame.height // 2, w, h)]
        self.buffers = [np.empty((batch, 2 * h, self.planes[min(i, 1)].span), np.uint8) for i in range(3)]

    def take(self, frame: av.VideoFrame, i: int) -> None:
        for k, plane in enumerate(frame.planes[:3]):
            data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            self.buffers[k][i] = self.planes[min(k, 1)].rows_of(data)

    def rgb(self, n: int) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB of the first ``n`` frames taken."""
        w, h = self.size
        y, u, v = (self.planes[min(k, 1)].average(self.buffers[k][:n], n) for k in range(3))
        u, v = u - 128.0, v - 128.0
        if self.full_range:
            r, g, b = y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u
        else:  # limited range, BT.601: what FFmpeg's RGB conversion assumes for untagged video
            y = (y - 16.0) * 1.164383
            r, g, b = y + 1.596027 * v, y - 0.391762 * u - 0.812968 * v, y + 2.017232 * u
        return np.clip(np.stack([r, g, b], axis=-1) + 0.5, 0, 255).astype(np.uint8)


class _PlaneCut:
    """Where in one plane (width x height) a w x h picture's samples lie: per cell, 2 rows by up to 4 columns."""

    def __init__(self, width: int, height: int, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.k = min(4, max(1, width // w))  # columns per cell: a plane narrower than the picture samples one
        rows = np.minimum(((np.arange(h)[:, None] + np.array([0.25, 0.75])) * height / h).astype(np.intp), height - 1).ravel()
        offsets = (np.arange(self.k) + 0.5) / self.k
        cols = np.minimum(((np.arange(w)[:, None] + offsets) * width / w).astype(np.intp), width - 1).ravel()
        self.at = np.ix_(rows, cols)
        self.span = len(cols)

    def rows_of(self, data: np.ndarray) -> np.ndarray:
        return data[self.at]

    def average(self, samples: np.ndarray, n: int) -> np.ndarray:
        return samples.reshape(n, self.h, 2, self.w, self.k).mean(axis=(2, 4), dtype=np.float32)


def feature_size(width: int, height: int, target: int = FEATURE_WIDTH) -> tuple[int, int]:
    """Downscaled size keeping the aspect ratio, both even, never larger than the source."""
    w = min(target, width) // 2 * 2 or 2
    h = max(2, round(height * w / width / 2) * 2)
    return w, h


def to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → (N, 3, H, W) float32 HSV with H in 0..180, S and V in 0..255 (OpenCV's scale)."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    v = np.maximum(np.maximum(r, g), b)
    d = v - np.minimum(np.minimum(r, g), b)
    s = d * 255.0 / np.maximum(v, 1.0)
    dd = np.maximum(d, 1.0)
    h = np.where(v == r, (g - b) / dd * 60.0, np.where(v == g, (b - r) / dd * 60.0 + 120.0, (r - g) / dd * 60.0 + 240.0))
    h = np.where(h < 0, h + 360.0, h) * 0.5
    h[d == 0] = 0.0
    return np.stack([h, s, v], axis=1)


def frame_deltas(hsv: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """Content score of each frame against the one before (NaN where that one is unknown)."""
    head = np.full(1, np.nan, np.float32) if prev is None else delta(prev, hsv[0])[None]
    rest = np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2, 3), dtype=np.float32)
    return np.concatenate([head, rest]).astype(np.float32)


def delta(a: np.ndarray, b: np.ndarray) -> np.float32:
    """Content score between two feature frames: mean |ΔH|, |ΔS|, |ΔV| averaged."""
    return np.float32(np.abs(b - a).mean(dtype=np.float32))
