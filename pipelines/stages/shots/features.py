"""Frame features for cut detection: decode a chunk small with decord, score frame-to-frame change.

Decord scales inside FFmpeg while converting, so a 1080p frame is never
turned into full-size RGB; the features are computed on 64-pixel-wide
frames, batch by batch, with vectorised numpy. The score is PySceneDetect's
content value: the mean absolute change of hue, saturation and value (in
OpenCV's 8-bit HSV scale), so its thresholds carry over.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from farm.runner.objects import ObjectHandle
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.media.access import media_path
from pipelines.stages.payloads import Chunk, ChunkFeatures

FEATURE_WIDTH = 64  # cut detection needs the picture's layout, not its detail (TransNet uses 48x27)


class FrameFeatures(Stage[Chunk, ChunkFeatures]):
    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle | None = None, *, width: int = FEATURE_WIDTH, threads: int = 1, batch: int = 64) -> None:
        self.objects = objects
        self.width, self.threads, self.batch = width, threads, batch
        self._reader: tuple[Path, Any] | None = None  # the last video's reader, reused by its next chunk

    def setup(self) -> None:
        import decord  # noqa: F401  (import cost paid once per worker, not per chunk)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}

    def reader(self, chunk: Chunk) -> Any:
        import decord

        path = media_path(chunk.video.source, self.objects)
        if self._reader is None or self._reader[0] != path:
            self._reader = None
            width, height = feature_size(chunk.video.width, chunk.video.height, self.width)
            try:
                vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=self.threads)
            except decord.DECORDError as exc:
                raise MediaError(f"the decoder cannot open the video: {str(exc).splitlines()[0][:200]}") from None
            if len(vr) != chunk.video.frames:
                raise MediaError(f"the decoder sees {len(vr)} frames where the container lists {chunk.video.frames}")
            self._reader = (path, vr)
        return self._reader[1]

    def process(self, item: Chunk) -> list[ChunkFeatures]:
        import decord

        began, cpu = time.perf_counter(), time.process_time()
        vr = self.reader(item)
        scores: list[np.ndarray] = []
        intensity: list[np.ndarray] = []
        first = prev = None
        compute = 0.0
        try:
            for start in range(item.start, item.end, self.batch):
                rgb = vr.get_batch(list(range(start, min(item.end, start + self.batch)))).asnumpy()
                t = time.perf_counter()
                hsv = to_hsv(rgb)
                intensity.append(rgb.reshape(len(rgb), -1).mean(axis=1, dtype=np.float32))
                scores.append(frame_deltas(hsv, prev))
                first = hsv[0] if first is None else first
                prev = hsv[-1]
                compute += time.perf_counter() - t
        except decord.DECORDError as exc:
            self._reader = None
            raise MediaError(f"corrupt: decoding failed in frames {item.start}-{item.end - 1}: {str(exc).splitlines()[0][:200]}") from None
        assert first is not None and prev is not None
        decode = time.perf_counter() - began - compute
        return [ChunkFeatures(item, np.concatenate(scores), np.concatenate(intensity), first, prev,
                              decode, compute, time.process_time() - cpu)]


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
