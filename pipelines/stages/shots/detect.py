"""Shot boundaries from stitched per-frame scores: content and adaptive detectors, fades.

Runs on the driver over a few floats per frame, so it sees the whole video at
once: a cut on a chunk edge is scored from the two chunks' edge frames,
exactly as if one worker had decoded both, and is found once.

- content: a cut where the score reaches ``threshold`` (PySceneDetect's
  ContentDetector; default 27).
- adaptive: a cut where the score is ``threshold`` times the mean of its
  neighbours in a rolling window and at least ``min_content`` (PySceneDetect's
  AdaptiveDetector; default 3.0) — steadier on fast motion.
- fades: a run of near-black frames entered or left by a ramp is one soft
  transition; the shot boundary sits in the black. Candidate cuts inside a
  fade (hue noise near black, a cut in from black) are folded into it.

Every boundary keeps at least ``min_shot_len`` frames from the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipelines.stages.shots.features import delta
from pipelines.stages.payloads import ChunkFeatures, Probed, Shot, Transition

DEFAULT_THRESHOLD = {"content": 27.0, "adaptive": 3.0}


@dataclass(frozen=True)
class DetectorConfig:
    kind: Literal["content", "adaptive"] = "content"
    threshold: float | None = None  # None: the detector's default
    min_shot_len: int = 6
    min_content: float = 15.0  # adaptive only: the least raw score a cut needs
    window: int = 2  # adaptive only: neighbours on each side
    fades: bool = True
    dark: float = 12.0  # mean intensity (0-255) under which a frame is black
    keyframes_per_shot: int = 1

    @property
    def level(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLD[self.kind]


def stitch(features: Sequence[ChunkFeatures], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """One score and one intensity per frame, scoring each chunk's first frame against the previous chunk's last."""
    ordered = sorted(features, key=lambda f: f.chunk.start)
    spans = [(f.chunk.start, f.chunk.end) for f in ordered]
    if not ordered or spans[0][0] != 0 or spans[-1][1] != frames or any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise ValueError(f"chunks {spans} do not tile frames 0..{frames}")
    scores = np.concatenate([f.scores for f in ordered]).astype(np.float32)
    intensity = np.concatenate([f.intensity for f in ordered]).astype(np.float32)
    for prev, cur in zip(ordered, ordered[1:]):
        scores[cur.chunk.start] = delta(prev.last, cur.first)
    scores[0] = 0.0
    return scores, intensity


def candidates(scores: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """Frames whose change from the previous frame looks like a cut, before any filtering."""
    if config.kind == "content":
        return np.flatnonzero(scores >= config.level)
    w = config.window
    kernel = np.ones(2 * w + 1, np.float64)
    sums = np.convolve(scores, kernel, mode="same") - scores
    counts = np.convolve(np.ones_like(scores, np.float64), kernel, mode="same") - 1
    mean = sums / np.maximum(counts, 1)
    ratio = np.where(mean > 1e-5, scores / np.maximum(mean, 1e-5), np.where(scores >= config.min_content, 255.0, 0.0))
    return np.flatnonzero((np.minimum(ratio, 255.0) >= config.level) & (scores >= config.min_content))


def fades(intensity: np.ndarray, dark: float, min_ramp: int = 2) -> list[Transition]:
    """Interior runs of black frames reached or left through a ramp of at least ``min_ramp`` frames."""
    n = len(intensity)
    black = intensity < dark
    edges = np.flatnonzero(np.diff(np.concatenate([[0], black.astype(np.int8), [0]])))
    found = []
    for a, b in zip(edges[::2], edges[1::2]):
        if a == 0 or b == n:
            continue  # from black at the start, to black at the end: not between two shots
        start = a
        while start > 0 and intensity[start - 1] > intensity[start] + 0.5:
            start -= 1
        end = b
        while end < n - 1 and intensity[end + 1] > intensity[end] + 0.5:
            end += 1
        ramp_out = a - start >= min_ramp and intensity[start] >= 2 * dark
        ramp_in = end - b >= min_ramp and intensity[end] >= 2 * dark
        if ramp_out or ramp_in:
            found.append(Transition(frame=int((a + b) // 2), kind="fade", score=0.0, start=int(start), end=int(end + 1)))
    return found


def transitions(scores: np.ndarray, intensity: np.ndarray, config: DetectorConfig) -> list[Transition]:
    """Hard cuts and fades, in order, each at least ``min_shot_len`` after the one before."""
    cand = [int(i) for i in candidates(scores, config) if i > 0 and not (intensity[i - 1] < config.dark and intensity[i] < config.dark)]
    merged: list[Transition] = []
    for fade in fades(intensity, config.dark) if config.fades else []:
        inside = [i for i in cand if fade.start <= i <= fade.end]
        if inside:  # a cut into or out of the black is this fade's boundary
            at = max(inside, key=lambda i: scores[i])
            fade = Transition(frame=at, kind="fade", score=float(scores[at]), start=fade.start, end=fade.end)
            cand = [i for i in cand if i not in inside]
        merged.append(fade)
    merged += [Transition(frame=i, kind="cut", score=float(scores[i]), start=i, end=i + 1) for i in cand]
    kept: list[Transition] = []
    last = 0
    for t in sorted(merged, key=lambda t: t.frame):
        if t.frame - last >= config.min_shot_len:
            kept.append(t)
            last = t.frame
    return kept


def shots(probed: Probed, found: Sequence[Transition], keyframes_per_shot: int = 1) -> list[Shot]:
    """Shots between consecutive boundaries, numbered from 1, with times and keyframes."""
    n = probed.video.frames
    times = probed.times()
    bounds = [0, *[t.frame for t in found], n]
    kinds = [None, *[t.kind for t in found]]
    out = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        k = max(1, min(keyframes_per_shot, b - a))
        picks = tuple(sorted({a + (2 * j + 1) * (b - a) // (2 * k) for j in range(k)}))
        out.append(Shot(index=i + 1, start=a, end=b, start_time=float(times[a]), end_time=float(times[b]),
                        keyframes=picks, transition_in=kinds[i]))
    return out
