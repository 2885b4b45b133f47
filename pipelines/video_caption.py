"""`video.caption`: every shot of each input video described by a vision-language model.

One item per input video. Shots come from an earlier `video.shots` output
when the spec names one for the video (the sampling task then only probes
the video and checks the list fits it, never decoding it for detection),
else from the `video.shots` detection stages. Then, streaming on Ray Data: a
task per video decodes the sampled frames of all its shots at once → the model answers shots in batches that mix videos (an
actor pool of the transformers engine on CPUs, ``ray.data.llm``'s vLLM
multimodal path on GPU clusters; the registry entry's ``runtime`` decides)
→ the driver writes each video's ``<video>.captions.json``, ``.srt`` and
``.vtt`` once its last shot is answered. Events carry ``videos_detected``,
``detection_frames_decoded``, ``shots_from_assets``, then
``shots_captioned``/``shots_total``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from farm.runner.context import JobContext
from kinds.video_caption import VideoCaptionSpec
from pipelines.progress import Reporter
from pipelines.stages.backend import dataset, map_stage
from pipelines.stages.caption.files import ShotCaption, captions_json, captions_srt, captions_vtt
from pipelines.stages.caption.sample import CaptionShots, GivenShots, SampleShotFrames
from pipelines.stages.models.pool import payloads, run_pool
from pipelines.stages.models.vlm import Captioned, VisionLLMStage, VisionStage
from pipelines.stages.payloads import Failed, Source, Video
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import Progress, find_shots
from serve.registry import ModelSpec

ENGINES = 1  # one engine per job: a tiny model on CPUs is quicker batched in one actor than split across two


def run(ctx: JobContext) -> None:
    spec = ctx.spec
    assert isinstance(spec, VideoCaptionSpec)
    found, rejected = ctx.resolve_inputs(spec.asset_ids, spec.project_id, kind="video")
    ctx.set_total(len(found) + len(rejected))
    for index, message in rejected:
        ctx.item(index, False, message)
    done = ctx.done_items()
    sources = [Source(a.index, a.name, object_key=a.object_key, asset_id=a.id) for a in found if a.index not in done]
    if sources:
        Captioning(ctx, spec).run(sources)
    ctx.flush()


class Captioning:
    """One attempt's work: shots, then sampled frames through the model, then each video's files."""

    def __init__(self, ctx: JobContext, spec: VideoCaptionSpec) -> None:
        self.ctx, self.spec = ctx, spec
        self.report = Reporter(ctx)
        self.failed: set[int] = set()
        self.shots_from: dict[int, dict[str, Any]] = {}
        self.work_of: dict[int, CaptionShots | GivenShots] = {}

    def fail(self, item: int, message: str) -> None:
        if item not in self.failed:
            self.failed.add(item)
            self.ctx.item(item, False, message)

    def run(self, sources: list[Source]) -> None:
        try:
            model = self.ctx.models.pick("vlm", self.spec.model)
        except KeyError as exc:
            for s in sources:
                self.fail(s.index, exc.args[0])
            return
        self.ctx.connect_ray()
        work = self.shots(sources)
        total = sum(len(w.shots) for w in work if isinstance(w, CaptionShots))  # given lists are counted as they are read
        self.report.emit(force=True, phase="caption", shots_captioned=0, shots_total=total)
        waiting: dict[int, int] = {}
        captions: dict[int, list[ShotCaption]] = defaultdict(list)
        batches: list[int] = []
        count = 0
        for out in self.caption(model, work):
            if isinstance(out, Failed):
                self.fail(out.source.index, out.message)
                continue
            index = out.video.source.index
            if index not in waiting:
                waiting[index] = out.shots
                if not isinstance(self.work_of[index], CaptionShots):
                    total += out.shots
            captions[index].append(out.caption)
            batches.append(out.caption.batch_size)
            count += 1
            self.report.emit(shots_captioned=count, shots_total=total, mean_batch_size=round(sum(batches) / len(batches), 3))
            waiting[index] -= 1
            if waiting[index] == 0 and index not in self.failed:
                self.finish(model, out.video, sorted(captions.pop(index), key=lambda c: c.shot.index))
        self.report.emit(force=True, shots_captioned=count, shots_total=total)

    # -- shots -----------------------------------------------------------------------------------

    def shots(self, sources: list[Source]) -> list[CaptionShots | GivenShots]:
        """Each video's work: its shots read from the named `video.shots` outputs (by the sampling task), else detected here."""
        spec = self.spec
        given = {i: a for i, a in enumerate(spec.shots_asset_ids or []) if a is not None}
        to_detect = [s for s in sources if s.index not in given]
        work: list[CaptionShots | GivenShots] = []
        wanted = [s for s in sources if s.index in given]
        if wanted:
            order = [s.index for s in wanted]
            docs, rejected = self.ctx.resolve_inputs([given[i] for i in order], None, kind=None)
            for position, message in rejected:
                self.fail(order[position], f"shots_asset_ids[{order[position]}]: {message}")
            for doc in docs:
                source = wanted[doc.index]
                work.append(GivenShots(source, doc.object_key, doc.name, spec.frames_per_shot, spec.frame_short_side, spec.prompt,
                                       spec.max_tokens))
                self.shots_from[source.index] = {"source": "shots_asset", "asset_id": doc.id, "name": doc.name, "frames_decoded": 0}
        progress = Progress()
        if to_detect:
            config = DetectorConfig(kind=spec.detector, threshold=spec.threshold, min_shot_len=spec.min_shot_len)
            detected, failed = find_shots(to_detect, config, objects=self.ctx.objects,
                                          on_chunk=lambda p: setattr(progress, "frames_decoded", p.frames_decoded))
            for f in failed.values():
                self.fail(f.source.index, f.message)
            for index, d in detected.items():
                work.append(CaptionShots(d.probed.video, tuple(d.shots), spec.frames_per_shot, spec.frame_short_side, spec.prompt,
                                         spec.max_tokens))
                self.shots_from[index] = {"source": "detected", "frames_decoded": d.probed.video.frames}
        self.work_of = {w.source.index: w for w in work}
        self.report.emit(force=True, phase="shots", videos_detected=len(to_detect), detection_frames_decoded=progress.frames_decoded,
                         shots_from_assets=sum(isinstance(w, GivenShots) for w in work))
        return work

    # -- caption, write ------------------------------------------------------------------------------

    def caption(self, model: ModelSpec, work: list[CaptionShots | GivenShots]) -> Iterator[Any]:
        """`Captioned` shots (or `Failed`) as batches finish: sample tasks → the model, streaming."""
        if not work:
            return iter(())
        sampled = map_stage(dataset(work), SampleShotFrames(self.ctx.objects))
        if model.runtime == "vllm":
            return payloads(VisionLLMStage(model, batch_size=model.max_batch_size)(sampled))
        return payloads(run_pool(VisionStage(model), sampled, batch_size=model.max_batch_size, concurrency=ENGINES))

    def finish(self, model: ModelSpec, video: Video, captions: list[ShotCaption]) -> None:
        item, stem = video.source.index, video.source.stem
        if captions and not any(c.text.strip() for c in captions):
            self.fail(item, f"the model ({model.name}) returned no text for any of the {len(captions)} shots")
            return
        doc = captions_json(video, captions, model=model.name, prompt=self.spec.prompt, shots_from=self.shots_from[item])
        self.ctx.save_output(item, "captions", f"{stem}.captions.json", doc)
        self.ctx.save_output(item, "srt", f"{stem}.captions.srt", captions_srt(captions))
        self.ctx.save_output(item, "vtt", f"{stem}.captions.vtt", captions_vtt(captions))
        self.ctx.item(item, True)
