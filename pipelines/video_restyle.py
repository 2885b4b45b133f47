"""`video.restyle`: every frame of each input video rendered through a diffusion model, shot by shot, with its audio.

One item per input video. Workers probe and find shots (or the job reads
them from earlier `video.shots` outputs); the driver plans frame-range
chunks that never cross a cut and streams them through Ray Data: decode at
the working size (tasks) → image-to-image on an actor pool of the diffusion
engine → encode each chunk (tasks). Each finished chunk is recorded as a
part of its item, so a retried runner renders only what is missing. A video
whose chunks are all done is joined on a worker (remux, source audio copied)
with a before/after contact sheet; the driver records the outputs and a
report of per-shot flicker and per-frame checksums, then drops the chunk
files. The driver never holds frame data: only chunk records come back.
A last ``timings`` event says where the driver's time went (shots, render,
record, join) and how long the first chunk took to come back: the start-up
of decode workers and engines, which small jobs spend most of their time on.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from farm.runner.context import InputAsset, JobContext, PartRecord
from kinds.video_restyle import VideoRestyleSpec
from pipelines.progress import Reporter
from pipelines.stages.backend import dataset, map_stage, run_ray
from pipelines.stages.media.frames import working_size
from pipelines.stages.media.probe import Probe
from pipelines.stages.models.pool import payloads, run_pool
from pipelines.stages.payloads import Failed, Probed, Shot, Source
from pipelines.stages.restyle.chunks import DecodeChunk, EncodedChunk, EncodeChunk, RenderFrames
from pipelines.stages.restyle.join import Joined, JoinTask, JoinVideo
from pipelines.stages.restyle.plan import Look, RenderChunk, plan
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import find_shots
from pipelines.stages.timings import PhaseClock
from serve.registry import ModelSpec

ENGINES = (2, 4)  # diffusion engines per job: two from the start (chunks render in parallel), up to four while work is queued
CHUNKS_PER_ENGINE = 4  # an engine is started only for this many chunks: loading a model costs more than rendering a few chunks
STATIC_LEVEL = 0.5  # mean source change (0-255 levels) below which a shot counts as static for flicker
OUR_OUTPUTS = r"(\.restyled\.mp4|\.shot-\d{3}\.mp4)$"
PHASES = ("shots", "render", "record", "join")


def run(ctx: JobContext) -> None:
    spec = ctx.spec
    assert isinstance(spec, VideoRestyleSpec)
    found, rejected = ctx.resolve_inputs(spec.asset_ids, spec.project_id, kind="video", exclude=lambda n: re.search(OUR_OUTPUTS, n) is not None)
    ctx.set_total(len(found) + len(rejected))
    for index, message in rejected:
        ctx.item(index, False, message)
    done = ctx.done_items()
    sources = [Source(a.index, a.name, object_key=a.object_key, asset_id=a.id) for a in found if a.index not in done]
    if sources:
        Restyle(ctx, spec).run(sources)
    ctx.flush()


@dataclass
class VideoPlan:
    probed: Probed
    shots: list[Shot]
    chunks: list[RenderChunk]


class Restyle:
    """One attempt's work: shots, the chunk plan, the render stream, the joins."""

    def __init__(self, ctx: JobContext, spec: VideoRestyleSpec) -> None:
        self.ctx, self.spec = ctx, spec
        self.report = Reporter(ctx)
        self.clock = PhaseClock(PHASES)
        self.engines = 0  # the most diffusion engines the render may start
        self.failed: dict[int, str] = {}

    def fail(self, item: int, message: str) -> None:
        if item not in self.failed:
            self.failed[item] = message
            self.ctx.release_parts(item, forget=True)
            self.ctx.item(item, False, message)

    def run(self, sources: list[Source]) -> None:
        try:
            model = self.ctx.models.pick("diffusion", self.spec.model)
        except KeyError as exc:
            for s in sources:
                self.fail(s.index, exc.args[0])
            return
        self.ctx.connect_ray()
        self.report.emit(force=True, phase="shots", videos=len(sources))
        with self.clock.phase("shots"):
            shots = self.shots(sources)
            plans = {i: self.plan(p, s) for i, (p, s) in shots.items()}
        plans = {i: p for i, p in plans.items() if p is not None}
        recorded = {i: self.ctx.parts(i) for i in plans}
        todo = [c for i, p in plans.items() for c in p.chunks if c.part not in recorded[i]]
        total = sum(c.frames for p in plans.values() for c in p.chunks)
        rendered = sum(c.frames for i, p in plans.items() for c in p.chunks if c.part in recorded[i])
        self.report.emit(force=True, phase="render", frames_rendered=rendered, frames_total=total,
                         chunks_total=sum(len(p.chunks) for p in plans.values()), chunks_resumed=sum(len(r) for r in recorded.values()))
        first_chunk_s: float | None = None
        began = time.perf_counter()
        with self.clock.phase("render"):
            for out in self.render(model, todo):
                if first_chunk_s is None:
                    first_chunk_s = time.perf_counter() - began
                if isinstance(out, Failed):
                    self.fail(out.source.index, out.message)
                    continue
                item = out.chunk.source.index
                with self.clock.phase("record"):
                    recorded[item][out.chunk.part] = self.ctx.record_part(item, out.chunk.part, stored=out.stored, worker=out.worker,
                                                                          data=chunk_data(out))
                    if item in self.failed:  # a sibling chunk failed first: this one's file goes too
                        self.ctx.release_parts(item, forget=True)
                rendered += out.chunk.frames
                self.report.emit(frames_rendered=rendered)
        self.report.emit(force=True, phase="join", frames_rendered=rendered)
        with self.clock.phase("join"):
            self.join({i: p for i, p in plans.items() if i not in self.failed}, recorded)
        self.ctx.event("timings", seconds=self.clock.rounded(), videos=len(sources), chunks_rendered=len(todo), engines=self.engines,
                       first_chunk_s=None if first_chunk_s is None else round(first_chunk_s, 3))

    # -- shots -----------------------------------------------------------------------------------

    def shots(self, sources: list[Source]) -> dict[int, tuple[Probed, list[Shot]]]:
        """Each video's probe and shots: detected here, or read from the named `video.shots` outputs."""
        spec = self.spec
        if spec.shots_asset_ids is None:
            d = spec.shot_detection()
            config = DetectorConfig(kind=d.detector, threshold=d.threshold, min_shot_len=d.min_shot_len, fades=d.fades, keyframes_per_shot=1)
            detected, failed = find_shots(sources, config, objects=self.ctx.objects)
            for f in failed.values():
                self.fail(f.source.index, f.message)
            return {i: (d.probed, d.shots) for i, d in detected.items()}
        docs, rejected = self.ctx.resolve_inputs(spec.shots_asset_ids, None, kind=None)
        for index, message in rejected:
            self.fail(index, f"shots_asset_ids[{index}]: {message}")
        by_index = {a.index: a for a in docs}
        out: dict[int, tuple[Probed, list[Shot]]] = {}
        for probed in run_ray(Probe(self.ctx.objects), [s for s in sources if s.index in by_index]):
            if isinstance(probed, Failed):
                self.fail(probed.source.index, probed.message)
                continue
            index = probed.video.source.index
            try:
                out[index] = (probed, self.read_shots(by_index[index], probed))
            except ValueError as exc:
                self.fail(index, f"shots_asset_ids[{index}]: {exc}")
        return out

    def read_shots(self, asset: InputAsset, probed: Probed) -> list[Shot]:
        try:
            doc = json.loads(b"".join(self.ctx.objects.get(asset.object_key)))
            shots = [Shot(int(s["index"]), int(s["start_frame"]), int(s["end_frame"]), float(s["start_time"]), float(s["end_time"]),
                          tuple(int(k) for k in s.get("keyframes") or ()), s.get("transition_in")) for s in doc["shots"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{asset.name} is not a video.shots shot list ({type(exc).__name__}: {exc})") from None
        frames = probed.video.frames
        if not shots or shots[0].start != 0 or shots[-1].end != frames or any(a.end != b.start for a, b in zip(shots, shots[1:])):
            raise ValueError(f"{asset.name} does not cover the video's {frames} frames shot after shot (made from another video?)")
        return shots

    # -- plan, render, join -----------------------------------------------------------------------

    def plan(self, probed: Probed, shots: list[Shot]) -> VideoPlan | None:
        spec, video = self.spec, probed.video
        if video.frames > spec.max_frames:
            self.fail(video.source.index, f"the video has {video.frames} frames, more than this job's max_frames ({spec.max_frames}); "
                                          "raise max_frames or split the video")
            return None
        working = working_size(video.width, video.height, spec.short_side)
        output = working if spec.output_size == "working" else (video.width - video.width % 2, video.height - video.height % 2)
        look = Look(steps=spec.steps, strength=spec.strength, guidance_scale=spec.guidance_scale, consistency=spec.consistency,
                    negative_prompt=spec.negative_prompt, crf=spec.crf, preset=spec.preset)
        chunks = plan(probed, shots, chunk_size=spec.chunk_size, prompt=spec.prompt, shot_prompts=spec.shot_prompts, seed=spec.seed,
                      seed_policy=spec.seed_policy, working=working, output=output, look=look, preview=spec.preview)
        return VideoPlan(probed, shots, chunks)

    def render(self, model: ModelSpec, chunks: list[RenderChunk]) -> Any:
        """Encoded chunks (or `Failed`) as they finish: decode tasks → engine actors → encode tasks, streaming."""
        if not chunks:
            return iter(())
        chunks = sorted(chunks, key=lambda c: -c.frames)  # long ones first: no worker idles at the end
        decoded = map_stage(dataset(chunks), DecodeChunk(self.ctx.objects))
        most = max(1, min(ENGINES[1], len(chunks) // CHUNKS_PER_ENGINE))
        least = min(ENGINES[0], most)
        self.engines = most
        rendered = run_pool(RenderFrames(model), decoded, batch_size=1, concurrency=(least, most) if most > least else least)
        return payloads(map_stage(rendered, EncodeChunk(self.ctx.objects)))

    def join(self, plans: dict[int, VideoPlan], recorded: dict[int, dict[str, PartRecord]]) -> None:
        tasks = []
        for item, p in plans.items():
            parts = recorded[item]
            missing = [c.part for c in p.chunks if c.part not in parts or not parts[c.part].object_key]
            if missing:
                self.fail(item, f"{len(missing)} chunks were not rendered ({', '.join(missing[:3])}…)")
                continue
            tasks.append(JoinTask(p.probed.video, tuple(parts[c.part].object_key or "" for c in p.chunks),
                                  tuple((s.index, _anchor(p, s)) for s in p.shots),
                                  self.spec.preview))
        joined = 0
        for out in run_ray(JoinVideo(self.ctx.objects), tasks):
            if isinstance(out, Failed):
                self.fail(out.source.index, out.message)
                continue
            self.finish(out, plans[out.task.source.index], recorded[out.task.source.index])
            joined += 1
            self.report.emit(videos_joined=joined)

    def finish(self, joined: Joined, p: VideoPlan, parts: dict[str, PartRecord]) -> None:
        with self.clock.phase("record"):
            self._finish(joined, p, parts)

    def _finish(self, joined: Joined, p: VideoPlan, parts: dict[str, PartRecord]) -> None:
        item, stem = joined.task.source.index, joined.task.source.stem
        if joined.video is not None:
            self.ctx.record_output(item, "video", joined.video)
        self.ctx.record_output(item, "contact_sheet", joined.sheet)
        self.ctx.save_output(item, "report", f"{stem}.restyle.json", report(self.spec, p, parts, joined))
        self.ctx.release_parts(item)
        self.ctx.item(item, True)


def _anchor(p: VideoPlan, shot: Shot) -> int:
    return next(c.anchor for c in p.chunks if c.shot == shot.index)


def chunk_data(out: EncodedChunk) -> dict[str, Any]:
    """What a chunk's part record keeps: enough to report on the video without its frames."""
    c = out.chunk
    return {"shot": c.shot, "start": c.start, "end": c.end, "checksums": list(out.checksums),
            "source_diffs": [round(d, 4) for d in out.source_diffs], "output_diffs": [round(d, 4) for d in out.output_diffs],
            "render_s": round(out.render_s, 3)}


def shot_flicker(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Within one shot: mean consecutive-frame change of the output over that of the source (pairs inside chunks)."""
    src = [d for p in parts for d in p["source_diffs"]]
    out = [d for p in parts for d in p["output_diffs"]]
    motion = sum(src) / len(src) if src else 0.0
    change = sum(out) / len(out) if out else 0.0
    static = motion < STATIC_LEVEL
    return {"pairs": len(src), "source_change": round(motion, 4), "output_change": round(change, 4), "static": static,
            "flicker": None if static or not src else round(change / motion, 4)}


def report(spec: VideoRestyleSpec, p: VideoPlan, parts: dict[str, PartRecord], joined: Joined) -> bytes:
    """The item's report: settings, per-shot flicker, per-frame checksums, which worker made which chunk."""
    by_shot: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in p.chunks:
        by_shot[c.shot].append(parts[c.part].data)
    shots = [{"index": s.index, "start_frame": s.start, "end_frame": s.end, "anchor_frame": _anchor(p, s),
              **shot_flicker(by_shot[s.index])} for s in p.shots]
    moving = [s for s in shots if not s["static"] and s["pairs"]]
    src = sum(s["source_change"] * s["pairs"] for s in moving)
    out = sum(s["output_change"] * s["pairs"] for s in moving)
    video = p.probed.video
    doc = {
        "video": {"name": video.source.name, "asset_id": video.source.asset_id, "frames": video.frames, "fps": video.fps,
                  "variable_fps": video.variable_fps, "resolution": [video.width, video.height], "has_audio": video.has_audio},
        "settings": spec.model_dump(mode="json", exclude={"asset_ids", "project_id", "shots_asset_ids"}),
        "working_size": list(p.chunks[0].working) if p.chunks else None,
        "output_size": list(p.chunks[0].output) if p.chunks else None,
        "preview": spec.preview,
        "flicker": round(out / src, 4) if src else None,
        "static_shots": [s["index"] for s in shots if s["static"]],
        "shots": shots,
        "frames_rendered": sum(c.frames for c in p.chunks),
        "checksums": [{"start": c.start, "end": c.end, "frames": parts[c.part].data["checksums"]} for c in p.chunks],
        "chunks": [{"part": c.part, "shot": c.shot, "start": c.start, "end": c.end, "attempt": parts[c.part].attempt,
                    "worker": parts[c.part].worker, "render_s": parts[c.part].data.get("render_s")} for c in p.chunks],
        "output": {"frames": joined.frames, "keyframes": list(joined.keyframes), "has_audio": joined.has_audio,
                   "duration": round(joined.duration, 6)},
    }
    return (json.dumps(doc, indent=2) + "\n").encode()
