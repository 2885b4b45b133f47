"""`video.shots`: each input video split into shots, with keyframes, clips, a contact sheet and shot lists.

One item per input video. Workers probe, decode chunks and render shots on
the Ray cluster, reading media from the object store themselves; the driver
resolves the inputs (the job's organization only), stitches scores, finds
boundaries, writes the small outputs and records every asset. Outputs are
named after the source: ``<video>.shots.json``, ``.shots.csv``, ``.edl``,
``.contact.jpg``, ``.shot-003.mp4``, ``.shot-003.jpg``. Progress events carry
``frames_decoded``/``frames_total``, then ``shots_rendered``/``shots_total``;
a last ``timings`` event gives the driver's seconds per phase (setup: inputs
and the connection to Ray; probe, decode, detect, render, record) and the
runner process's own start-up before them, so a user sees where a job's
time went.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import psutil

from farm.runner.context import JobContext
from kinds.video_shots import VideoShotsSpec
from pipelines.progress import Reporter
from pipelines.stages.backend import run_ray
from pipelines.stages.media.sheet import contact_sheet
from pipelines.stages.payloads import Failed, Probed, RenderedShot, Shot, ShotTask, Source
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import Detected, Progress, find_shots
from pipelines.stages.shots.render import RenderShot
from pipelines.stages.shots.reports import edl, shots_csv, shots_json, timecode
from pipelines.stages.timings import PhaseClock

CLIP_NAME = r"\.shot-\d{3}\.mp4$"
PHASES = ("setup", "probe", "decode", "detect", "render", "record")


def run(ctx: JobContext) -> None:
    spec = ctx.spec
    assert isinstance(spec, VideoShotsSpec)
    runner_start_s = time.time() - psutil.Process().create_time()  # the runner's own start: Python, imports, claim
    clock = PhaseClock(PHASES)
    with clock.phase("setup"):
        sources, rejected = resolve_inputs(ctx, spec)
        ctx.set_total(len(sources) + len(rejected))
        for index, message in rejected:
            ctx.item(index, False, message)
        done = ctx.done_items()
        todo = [s for s in sources if s.index not in done]
        if todo:
            ctx.connect_ray()
    if todo:
        report = ShotsReporter(ctx)
        detected, failed = find_shots(
            todo, detector_config(spec), objects=ctx.objects, chunk_size=spec.chunk_size,
            on_probed=report.probed, on_chunk=report.frames, clock=clock,
        )
        for f in failed.values():
            ctx.item(f.source.index, False, f.message)
        Outputs(ctx, spec, report, clock).write(detected)
        ctx.event("timings", seconds=clock.rounded(), videos=len(todo), runner_start_s=round(runner_start_s, 3))
    ctx.flush()


def detector_config(spec: VideoShotsSpec) -> DetectorConfig:
    return DetectorConfig(kind=spec.detector, threshold=spec.threshold, min_shot_len=spec.min_shot_len,
                          fades=spec.fades, keyframes_per_shot=spec.keyframes_per_shot)


def resolve_inputs(ctx: JobContext, spec: VideoShotsSpec) -> tuple[list[Source], list[tuple[int, str]]]:
    """The job's videos as sources (never our own clips, when a whole project is the input)."""
    found, rejected = ctx.resolve_inputs(spec.asset_ids, spec.project_id, kind="video", exclude=_is_our_clip)
    return [Source(a.index, a.name, object_key=a.object_key, asset_id=a.id) for a in found], rejected


def _is_our_clip(name: str) -> bool:
    return re.search(CLIP_NAME, name) is not None


class ShotsReporter(Reporter):
    """Frames while decoding, then shots while rendering."""

    def probed(self, probed: Iterable[Probed], progress: Progress) -> None:
        self.emit(force=True, phase="decode", frames_decoded=0, frames_total=progress.frames_total)

    def frames(self, progress: Progress) -> None:
        self.emit(force=progress.frames_decoded == progress.frames_total,
                  frames_decoded=progress.frames_decoded, frames_total=progress.frames_total)


class Outputs:
    """Renders shots on workers, then writes and records each video's outputs as it completes."""

    def __init__(self, ctx: JobContext, spec: VideoShotsSpec, report: ShotsReporter, clock: PhaseClock) -> None:
        self.ctx, self.spec, self.report, self.clock = ctx, spec, report, clock
        self.want = set(spec.outputs)

    def write(self, detected: dict[int, Detected]) -> None:
        render = bool(self.want & {"keyframes", "clips", "contact_sheet"})
        tasks = [self._task(d, shot) for d in detected.values() for shot in d.shots] if render else []
        waiting = defaultdict(int, {i: len(d.shots) if render else 0 for i, d in detected.items()})
        rendered: dict[int, list[RenderedShot]] = defaultdict(list)
        failures: dict[int, Failed] = {}
        for index in [i for i, n in waiting.items() if n == 0]:
            with self.clock.phase("record"):
                self._finish(detected[index], [])
        self.report.emit(force=True, phase="render", shots_rendered=0, shots_total=len(tasks))
        count = 0
        with self.clock.phase("render"):  # less the recording done in between, as each video completes
            for out in run_ray(RenderShot(self.ctx.objects, crf=self.spec.clip_crf, preset=self.spec.clip_preset), tasks):
                index = out.source.index if isinstance(out, Failed) else out.task.video.source.index
                if isinstance(out, Failed):
                    failures.setdefault(index, out)
                else:
                    rendered[index].append(out)
                waiting[index] -= 1
                count += 1
                self.report.emit(shots_rendered=count)
                if waiting[index] == 0:
                    with self.clock.phase("record"):
                        if index in failures:
                            self._discard(rendered.pop(index, []))
                            self.ctx.item(index, False, failures[index].message)
                        else:
                            self._finish(detected[index], sorted(rendered.pop(index, []), key=lambda r: r.task.shot.index))
        self.report.emit(force=True, shots_rendered=count)

    def _task(self, d: Detected, shot: Shot) -> ShotTask:
        return ShotTask(
            video=d.probed.video, shot=shot, pts=d.probed.pts_range(shot.start, shot.end),
            keyframes="keyframes" in self.want, clip="clips" in self.want,
        )

    def _discard(self, renders: list[RenderedShot]) -> None:
        """A video that failed half-way leaves no unrecorded objects behind."""
        for r in renders:
            for f in [*r.keyframes, *([r.clip] if r.clip else [])]:
                if f.object_key:
                    self.ctx.objects.delete(f.object_key)

    def _finish(self, d: Detected, renders: list[RenderedShot]) -> None:
        video = d.probed.video
        item, stem = video.source.index, video.source.stem
        per_shot: dict[int, dict[str, Any]] = {}
        for r in renders:  # shot by shot first, then the video's own files
            entry: dict[str, Any] = {"worker": r.worker}
            images = [self.ctx.record_output(item, "keyframes", f) for f in r.keyframes]
            if images:
                entry["keyframe_images"] = [{"name": f.name, "asset_id": a} for f, a in zip(r.keyframes, images)]
            if r.clip is not None:
                clip_id = self.ctx.record_output(item, "clips", r.clip)
                entry["clip"] = {"name": r.clip.name, "asset_id": clip_id, "frames": r.clip_frames, "audio": r.clip_has_audio}
            per_shot[r.task.shot.index] = entry
        if "contact_sheet" in self.want:
            captions = [f"#{s.index:03d}  {timecode(s.start, video.rate)}  ({s.frames} f)" for s in d.shots]
            thumbs = {r.task.shot.index: r.thumbnail for r in renders}
            title = f"{video.source.name}: {len(d.shots)} shots, {video.width}x{video.height} @ {video.fps:.3g} fps"
            sheet = contact_sheet([thumbs.get(s.index) for s in d.shots], captions, title=title)
            self.ctx.save_output(item, "contact_sheet", f"{stem}.contact.jpg", sheet)
        detector = {"kind": self.spec.detector, "threshold": detector_config(self.spec).level,
                    "min_shot_len": self.spec.min_shot_len, "fades": self.spec.fades}
        if "json" in self.want:
            self.ctx.save_output(item, "shots", f"{stem}.shots.json", shots_json(video, d.shots, d.transitions, detector, per_shot))
        if "csv" in self.want:
            self.ctx.save_output(item, "shots_csv", f"{stem}.shots.csv", shots_csv(video, d.shots))
        if "edl" in self.want:
            self.ctx.save_output(item, "edl", f"{stem}.edl", edl(video, d.shots))
        self.ctx.item(item, True)
