"""Shot boundaries from stitched per-frame scores: content and adaptive detectors, fades.

Runs on the driver over a few floats per frame, so it sees the whole video at
once: a cut on a chunk edge is scored from the two chunks' edge frames,
exactly as if one worker had decoded both, and is found once.

- content: a cut where the score reaches ``threshold`` (PySceneDetect's
  ContentDetector; default 27) and rises above the median score of the
  frames around it by ``min_rise`` of the threshold: on footage that changes
  a lot every frame (a running counter, noise, strobes) the busy frames stay
  quiet and a real cut still stands out; on calm footage nothing changes.
- adaptive: a cut where the score is ``threshold`` times the mean of its
  neighbours in a rolling window and at least ``min_content`` (PySceneDetect's
  AdaptiveDetector; default 3.0) — steadier on fast motion.
- fades: a run of near-black frames entered or left by a ramp is one soft
  transition; the shot boundary sits in the black. Candidate cuts touching a
  dim frame inside a fade (hue noise near black, a cut in from black) are
  folded into it; a cut between two lit frames inside a fade's ramp is a hard
  cut of its own, and the fade ends (or begins) there.

Hard cuts keep at least ``min_shot_len`` frames from each other (a flash is
not two shots). A fade never takes a hard cut's place: when the two are
closer than that, the fade's boundary moves within its span, away from the
cut, and both are kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
    min_rise: float = 0.6  # content only: share of the threshold a cut must rise above the local level
    level_window: int = 4  # content only: frames on each side whose median score is the local level
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
        rise = scores - local_level(scores, config.level_window)
        return np.flatnonzero((scores >= config.level) & (rise >= config.min_rise * config.level))
    w = config.window
    kernel = np.ones(2 * w + 1, np.float64)
    sums = np.convolve(scores, kernel, mode="same") - scores
    counts = np.convolve(np.ones_like(scores, np.float64), kernel, mode="same") - 1
    mean = sums / np.maximum(counts, 1)
    ratio = np.where(mean > 1e-5, scores / np.maximum(mean, 1e-5), np.where(scores >= config.min_content, 255.0, 0.0))
    return np.flatnonzero((np.minimum(ratio, 255.0) >= config.level) & (scores >= config.min_content))


def local_level(scores: np.ndarray, window: int) -> np.ndarray:
    """Median score of the ``window`` frames on each side of every frame, itself left out: how much the picture changes anyway."""
    padded = np.pad(scores.astype(np.float64), window, constant_values=np.nan)
    around = np.delete(np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1), window, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a one-frame video has no neighbours
        return np.nan_to_num(np.nanmedian(around, axis=1), nan=0.0)


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
    """Hard cuts and fades, in order; no hard cut is lost to a fade beside it."""
    # Between black and a frame still dim (a fade's last step), the score is hue noise near black, not a cut.
    cand = [int(i) for i in candidates(scores, config)
            if i > 0 and not (min(intensity[i - 1], intensity[i]) < config.dark and max(intensity[i - 1], intensity[i]) < 2 * config.dark)]
    lit = {i for i in cand if min(intensity[i - 1], intensity[i]) >= 2 * config.dark}
    merged: list[Transition] = []
    for fade in fades(intensity, config.dark) if config.fades else []:
        start, end = fade.start, fade.end
        for i in (i for i in cand if start <= i <= end and i in lit):  # a hard cut in the ramp bounds the fade
            start, end = (max(start, i), end) if i <= fade.frame else (start, min(end, i))
        inside = [i for i in cand if start <= i <= end and i not in lit]
        at = max(inside, key=lambda i: scores[i]) if inside else fade.frame  # a cut into or out of the black is this fade's boundary
        merged.append(Transition(frame=at, kind="fade", score=float(scores[at]) if inside else 0.0, start=start, end=end))
        cand = [i for i in cand if i not in inside]
    merged += [Transition(frame=i, kind="cut", score=float(scores[i]), start=i, end=i + 1) for i in cand]
    return spaced(sorted(merged, key=lambda t: t.frame), config.min_shot_len)


def spaced(found: Sequence[Transition], min_shot_len: int) -> list[Transition]:
    """Boundaries at least ``min_shot_len`` apart, except that a fade moves within its span rather than drop a hard cut."""
    kept: list[Transition] = []
    for t in found:
        prev = kept[-1] if kept else None
        if t.frame - (prev.frame if prev else 0) >= min_shot_len:
            kept.append(t)
        elif prev is None or prev.kind == t.kind:
            continue  # a flash after a cut, or too near the start: not a shot of its own
        elif prev.kind == "fade":  # the cut stays; the fade's boundary moves back towards its start
            before = kept[-2].frame if len(kept) > 1 else 0
            kept[-1] = replace(prev, frame=min(prev.frame, max(prev.start, t.frame - min_shot_len, before + 1)))
            kept.append(t)
        else:  # a fade just after a cut: its boundary moves on towards its end
            kept.append(replace(t, frame=max(t.frame, min(t.end - 1, prev.frame + min_shot_len))))
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
