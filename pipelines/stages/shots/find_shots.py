"""The detection path, shared by the `video.shots` job and the benchmark: probe → chunks → features → boundaries.

Workers probe each video and decode its chunks in parallel; the driver only
sees probe results and a few floats per frame, plans the chunks, stitches
the scores and finds the shots. Any runner works: `run_ray` on the cluster,
`run_local` in tests. A ``clock`` gets the seconds spent probing, decoding
and detecting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from farm.runner.objects import ObjectHandle
from pipelines.stages.backend import cluster_cores, run_ray
from pipelines.stages.base import Stage
from pipelines.stages.media.probe import Probe
from pipelines.stages.payloads import ChunkFeatures, Failed, Probed, Shot, Source, Transition
from pipelines.stages.shots.detect import DetectorConfig, shots, stitch, transitions
from pipelines.stages.shots.features import FEATURE_WIDTH, FrameFeatures
from pipelines.stages.shots.split import SplitByFrame
from pipelines.stages.timings import PhaseClock

Runner = Callable[[Stage[Any, Any], Sequence[Any]], Iterator[Any]]


@dataclass(frozen=True)
class Detected:
    probed: Probed
    transitions: list[Transition]
    shots: list[Shot]


@dataclass
class Progress:
    """Frames decoded over frames to decode, for progress bars."""

    frames_total: int = 0
    frames_decoded: int = 0


def find_shots(
    sources: Sequence[Source], config: DetectorConfig, *, objects: ObjectHandle | None = None, chunk_size: int = 240,
    feature_width: int = FEATURE_WIDTH, run: Runner = run_ray,
    on_probed: Callable[[Iterable[Probed], Progress], None] | None = None,
    on_chunk: Callable[[Progress], None] | None = None, clock: PhaseClock | None = None, cores: int | None = None,
) -> tuple[dict[int, Detected], dict[int, Failed]]:
    """Shots of every source (by item index), and the sources that failed with why.

    ``cores`` (default: the cluster's, for `run_ray`) only shapes small jobs: when
    the videos hold fewer frames than a chunk per core, chunks shrink to keyframe
    edges so every core still decodes.
    """
    clock = clock or PhaseClock()
    cores = cores or (cluster_cores() if run is run_ray else 1)
    failed: dict[int, Failed] = {}
    probed: dict[int, Probed] = {}
    with clock.phase("probe"):
        for out in run(Probe(objects), list(sources)):
            if isinstance(out, Failed):
                failed[out.source.index] = out
            else:
                probed[out.video.source.index] = out
    progress = Progress(frames_total=sum(p.video.frames for p in probed.values()))
    if on_probed is not None:
        on_probed(probed.values(), progress)
    split = chunk_plan(progress.frames_total, chunk_size, cores)
    # Longest first: workers that finish early pick up the short ones, so none idles at the end.
    chunks = sorted((c for p in probed.values() for c in split.process(p)), key=lambda c: -c.frames)
    features: dict[int, list[ChunkFeatures]] = defaultdict(list)
    with clock.phase("decode"):
        for out in run(FrameFeatures(objects, width=feature_width), chunks):
            if isinstance(out, Failed):
                failed.setdefault(out.source.index, out)
                continue
            features[out.chunk.video.source.index].append(out)
            progress.frames_decoded += out.chunk.frames
            if on_chunk is not None:
                on_chunk(progress)
    detected: dict[int, Detected] = {}
    with clock.phase("detect"):
        for index, p in probed.items():
            if index in failed:
                continue
            scores, intensity = stitch(features[index], p.video.frames)
            found = transitions(scores, intensity, config)
            detected[index] = Detected(p, found, shots(p, found, config.keyframes_per_shot))
    return detected, failed


def chunk_plan(frames: int, chunk_size: int, cores: int, least: int = 48) -> SplitByFrame:
    """``chunk_size`` chunks, or, for a job smaller than a chunk per core, a core's share cut only at keyframes."""
    share = -(-frames // max(cores, 1))
    if share >= chunk_size or share < least:
        return SplitByFrame(chunk_size)
    return SplitByFrame(share, keyframes_only=True)
