"""`video.caption`: every shot of each input video described by a vision-language model.

One item per input video. Shots come from an earlier `video.shots` output
when the spec names one for the video (the video is then only probed, never
decoded for detection), else from the `video.shots` detection stages. Then,
streaming on Ray Data: a task per video decodes the sampled frames of all
its shots at once → the model answers shots in batches that mix videos (an
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
from pipelines.stages.backend import dataset, map_stage, run_ray
from pipelines.stages.caption.files import ShotCaption, captions_json, captions_srt, captions_vtt
from pipelines.stages.caption.sample import CaptionShots, SampleShotFrames
from pipelines.stages.media.probe import Probe
from pipelines.stages.models.pool import payloads, run_pool
from pipelines.stages.models.vlm import Captioned, VisionLLMStage, VisionStage
from pipelines.stages.payloads import Failed, Probed, Shot, Source
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import Progress, find_shots
from pipelines.stages.shots.given import read_shots
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


def vlm_model(ctx: JobContext, name: str | None) -> ModelSpec:
    """The registry entry the job captions with (the first vision-language model when the spec names none)."""
    models = ctx.models.of_kind("vlm")
    if name is None:
        if not models:
            raise KeyError("this farm's model registry has no vision-language (vlm) model")
        return models[0]
    for spec in models:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown vlm model {name!r}; this farm's vlm models: {', '.join(m.name for m in models) or '(none)'}")


class Captioning:
    """One attempt's work: shots, then sampled frames through the model, then each video's files."""

    def __init__(self, ctx: JobContext, spec: VideoCaptionSpec) -> None:
        self.ctx, self.spec = ctx, spec
        self.report = Reporter(ctx)
        self.failed: set[int] = set()
        self.shots_from: dict[int, dict[str, Any]] = {}

    def fail(self, item: int, message: str) -> None:
        if item not in self.failed:
            self.failed.add(item)
            self.ctx.item(item, False, message)

    def run(self, sources: list[Source]) -> None:
        try:
            model = vlm_model(self.ctx, self.spec.model)
        except KeyError as exc:
            for s in sources:
                self.fail(s.index, exc.args[0])
            return
        self.ctx.connect_ray()
        found = self.shots(sources)
        work = [CaptionShots(p.video, tuple(shots), self.spec.frames_per_shot, self.spec.frame_short_side, self.spec.prompt,
                             self.spec.max_tokens) for p, shots in found.values()]
        total = sum(len(w.shots) for w in work)
        self.report.emit(force=True, phase="caption", shots_captioned=0, shots_total=total)
        waiting = {w.video.source.index: len(w.shots) for w in work}
        captions: dict[int, list[ShotCaption]] = defaultdict(list)
        batches: list[int] = []
        count = 0
        for out in self.caption(model, work):
            if isinstance(out, Failed):
                self.fail(out.source.index, out.message)
                continue
            index = out.video.source.index
            captions[index].append(out.caption)
            batches.append(out.caption.batch_size)
            count += 1
            self.report.emit(shots_captioned=count, mean_batch_size=round(sum(batches) / len(batches), 3))
            waiting[index] -= 1
            if waiting[index] == 0 and index not in self.failed:
                self.finish(model, found[index][0], sorted(captions.pop(index), key=lambda c: c.shot.index))
        self.report.emit(force=True, shots_captioned=count)

    # -- shots -----------------------------------------------------------------------------------

    def shots(self, sources: list[Source]) -> dict[int, tuple[Probed, list[Shot]]]:
        """Each video's probe and shots: read from the named `video.shots` outputs, else detected here."""
        given = {i: a for i, a in enumerate(self.spec.shots_asset_ids or []) if a is not None}
        to_detect = [s for s in sources if s.index not in given]
        out = self.read(sources, given) if given else {}
        progress = Progress()
        if to_detect:
            config = DetectorConfig(kind=self.spec.detector, threshold=self.spec.threshold, min_shot_len=self.spec.min_shot_len)
            detected, failed = find_shots(to_detect, config, objects=self.ctx.objects,
                                          on_chunk=lambda p: setattr(progress, "frames_decoded", p.frames_decoded))
            for f in failed.values():
                self.fail(f.source.index, f.message)
            for index, d in detected.items():
                out[index] = (d.probed, d.shots)
                self.shots_from[index] = {"source": "detected", "frames_decoded": d.probed.video.frames}
        self.report.emit(force=True, phase="shots", videos_detected=len(to_detect), detection_frames_decoded=progress.frames_decoded,
                         shots_from_assets=len(out) - sum(1 for v in self.shots_from.values() if v["source"] == "detected"))
        return out

    def read(self, sources: list[Source], given: dict[int, str]) -> dict[int, tuple[Probed, list[Shot]]]:
        """Shots from `shots.json` assets: the videos are probed (is the list theirs?), never decoded for detection."""
        wanted = [s for s in sources if s.index in given]
        order = sorted({s.index for s in wanted})
        docs, rejected = self.ctx.resolve_inputs([given[i] for i in order], None, kind=None)
        for position, message in rejected:
            self.fail(order[position], f"shots_asset_ids[{order[position]}]: {message}")
        by_index = {order[a.index]: a for a in docs}
        out: dict[int, tuple[Probed, list[Shot]]] = {}
        for probed in run_ray(Probe(self.ctx.objects), [s for s in wanted if s.index in by_index]):
            if isinstance(probed, Failed):
                self.fail(probed.source.index, probed.message)
                continue
            index = probed.video.source.index
            asset = by_index[index]
            try:
                out[index] = (probed, read_shots(b"".join(self.ctx.objects.get(asset.object_key)), asset.name, probed))
            except ValueError as exc:
                self.fail(index, f"shots_asset_ids[{index}]: {exc}")
                continue
            self.shots_from[index] = {"source": "shots_asset", "asset_id": asset.id, "name": asset.name, "frames_decoded": 0}
        return out

    # -- caption, write ------------------------------------------------------------------------------

    def caption(self, model: ModelSpec, work: list[CaptionShots]) -> Iterator[Any]:
        """`Captioned` shots (or `Failed`) as batches finish: sample tasks → the model, streaming."""
        if not work:
            return iter(())
        sampled = map_stage(dataset(work), SampleShotFrames(self.ctx.objects))
        if model.runtime == "vllm":
            return payloads(VisionLLMStage(model, batch_size=model.max_batch_size)(sampled))
        return payloads(run_pool(VisionStage(model), sampled, batch_size=model.max_batch_size, concurrency=ENGINES))

    def finish(self, model: ModelSpec, probed: Probed, captions: list[ShotCaption]) -> None:
        video = probed.video
        item, stem = video.source.index, video.source.stem
        if captions and not any(c.text.strip() for c in captions):
            self.fail(item, f"the model ({model.name}) returned no text for any of the {len(captions)} shots")
            return
        doc = captions_json(video, captions, model=model.name, prompt=self.spec.prompt, shots_from=self.shots_from[item])
        self.ctx.save_output(item, "captions", f"{stem}.captions.json", doc)
        self.ctx.save_output(item, "srt", f"{stem}.captions.srt", captions_srt(captions))
        self.ctx.save_output(item, "vtt", f"{stem}.captions.vtt", captions_vtt(captions))
        self.ctx.item(item, True)
