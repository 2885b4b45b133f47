"""`story.animatic`: stories → shot lists (one batched LLM pass) → keyframes (diffusion, batched across stories) → animatics.

One item per story (inline ones first, then text assets). The driver reads
the stories, has the LLM stage write every shot list in one pass (vLLM
structured outputs against the bounded schema; invalid answers tried again
in a further pass), records each ``<story>.shotlist.json``, then streams the
shots of all stories through the diffusion actor pool and, per story, an
assembly task (PyAV) that makes the MP4 with its subtitles, the SRT, the
storyboard and the `video_shots` document. Workers store bytes; the driver
records them and the items. The job's report holds the figures: the LLM
passes and every diffusion batch.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from farm.runner.context import JobContext
from farm.runner.objects import StoredFile
from kinds.story_animatic import StoryAnimaticSpec
from pipelines.progress import Reporter
from pipelines.stages.backend import dataset, run_ray
from pipelines.stages.models.pool import payloads, run_pool
from pipelines.stages.payloads import Failed, Source
from pipelines.stages.story.assemble import AnimaticTask, AssembleAnimatic
from pipelines.stages.story.keyframes import CallFigures, KeyframeStage, KeyframeTask, Keyframes, Look, keyframe_prompt, shot_seed
from pipelines.stages.story.shotlist import Bounds, ShotList, timed
from pipelines.stages.story.write import ShotListWriter, StoryInput
from serve.registry import ModelSpec

ENGINES = (1, 2)  # diffusion engines: one, a second while shots are queued
REPORT = "story-animatic.report.json"


def run(ctx: JobContext) -> None:
    spec = ctx.spec
    assert isinstance(spec, StoryAnimaticSpec)
    stories, rejected = read_stories(ctx, spec)
    ctx.set_total(len(spec.stories) + len(spec.asset_ids))
    for index, message in rejected:
        ctx.item(index, False, message)
    done = ctx.done_items()
    todo = [s for s in stories if s.index not in done]
    if todo:
        StoryAnimatic(ctx, spec).run(todo)
    ctx.flush()


def slug(title: str) -> str:
    """A story's output stem: its title in lower-case words joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-") or "story"


def story_from_text(name: str, text: str) -> tuple[str, str]:
    """A text or Markdown asset as (title, text): a leading ``# heading`` is the title, else the file's stem."""
    lines = text.lstrip("\ufeff").strip().splitlines()
    if lines and lines[0].startswith("# "):
        return lines[0][2:].strip() or name, "\n".join(lines[1:]).strip()
    return (name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name), text.strip()


def read_stories(ctx: JobContext, spec: StoryAnimaticSpec) -> tuple[list[StoryInput], list[tuple[int, str]]]:
    """The inline stories (items 0…), then the text assets (after them); unusable assets fail as items."""
    offset = len(spec.stories)
    entries: list[tuple[int, str, str, str | None]] = [(n, s.title, s.text, None) for n, s in enumerate(spec.stories)]
    rejected: list[tuple[int, str]] = []
    if spec.asset_ids:
        found, refused = ctx.resolve_inputs(spec.asset_ids, None, kind="text")
        rejected += [(offset + i, message) for i, message in refused]
        for asset in found:
            index = offset + asset.index
            if asset.size > 4 * spec.max_story_chars + 1024:  # even at 4 bytes a character, over the limit: do not read it
                rejected.append((index, f"{asset.name} is {asset.size} bytes, more than max_story_chars ({spec.max_story_chars}) allows"))
                continue
            try:
                raw = b"".join(ctx.objects.get(asset.object_key)).decode("utf-8")
            except UnicodeDecodeError:
                rejected.append((index, f"{asset.name} is not UTF-8 text"))
                continue
            title, text = story_from_text(asset.name, raw)
            if not text.strip():
                rejected.append((index, f"{asset.name}: the story is empty"))
            elif len(text) > spec.max_story_chars:
                rejected.append((index, f"{asset.name}: the story has {len(text)} characters, more than max_story_chars ({spec.max_story_chars})"))
            else:
                entries.append((index, title, text, asset.id))
    stems: dict[str, int] = defaultdict(int)
    stories = []
    for index, title, text, asset_id in sorted(entries):
        stem = slug(title)
        stems[stem] += 1
        stories.append(StoryInput(index, title, stem if stems[stem] == 1 else f"{stem}-{stems[stem]}", text, asset_id))
    return stories, rejected


class StoryAnimatic:
    """One attempt's work: shot lists, keyframes, assembly, and the figures of each."""

    def __init__(self, ctx: JobContext, spec: StoryAnimaticSpec) -> None:
        self.ctx, self.spec = ctx, spec
        self.report = Reporter(ctx)
        self.failed: dict[int, str] = {}
        self.bounds = Bounds(spec.min_shots, spec.max_shots, spec.shot_text_chars, spec.min_shot_s, spec.max_shot_s,
                             llm_durations=spec.timing == "llm")
        self.figures: dict[str, Any] = {}

    def fail(self, item: int, message: str) -> None:
        if item not in self.failed:
            self.failed[item] = message
            self.ctx.item(item, False, message)

    def run(self, stories: list[StoryInput]) -> None:
        try:
            llm = self.ctx.models.pick("llm", self.spec.llm_model)
            diffusion = self.ctx.models.pick("diffusion", self.spec.diffusion_model)
        except KeyError as exc:
            for s in stories:
                self.fail(s.index, exc.args[0])
            return
        self.ctx.connect_ray()
        seconds = self.figures["seconds"] = {}
        began = time.monotonic()
        self.report.emit(force=True, phase="shotlists", stories=len(stories))
        shotlists = self.shotlists(llm, stories)
        seconds["shotlists"], began = round(time.monotonic() - began, 3), time.monotonic()
        self.report.emit(force=True, phase="keyframes", shotlists=len(shotlists),
                         keyframes_total=sum(len(s.shots) for s in shotlists.values()) * self.spec.variants)
        keyframes = self.keyframes(diffusion, stories, shotlists)
        seconds["keyframes"], began = round(time.monotonic() - began, 3), time.monotonic()
        self.report.emit(force=True, phase="assembly")
        self.assemble(stories, shotlists, keyframes)
        seconds["assembly"] = round(time.monotonic() - began, 3)
        self.ctx.save_output(None, "report", REPORT, self.report_doc(llm, diffusion))

    # -- shot lists ---------------------------------------------------------------------------

    def shotlists(self, llm: ModelSpec, stories: list[StoryInput]) -> dict[int, ShotList]:
        spec = self.spec
        writer = ShotListWriter(llm, self.bounds, seed=spec.seed, temperature=spec.temperature, retries=spec.retries,
                                candidates=spec.candidates)
        written = writer.write(stories)
        self.figures["llm"] = {"model": llm.name, "passes": written.passes, "schema": writer.schema, "max_tokens": writer.bound}
        out: dict[int, ShotList] = {}
        for story in stories:
            if story.index in written.failed:
                self.fail(story.index, written.failed[story.index])
                continue
            shotlist = timed(written.drafts[story.index], story.title, self.bounds, fps=spec.fps, words_per_minute=spec.words_per_minute)
            doc = {"story": {"title": story.title, "asset_id": story.asset_id, "characters": len(story.text)},
                   "model": llm.name, **shotlist.model_dump(mode="json"), "frames": shotlist.frames,
                   "duration_s": round(shotlist.frames / spec.fps, 6)}
            self.ctx.save_output(story.index, "shotlist", f"{story.stem}.shotlist.json", (json.dumps(doc, indent=2) + "\n").encode())
            out[story.index] = shotlist
        return out

    # -- keyframes ----------------------------------------------------------------------------

    def keyframes(self, diffusion: ModelSpec, stories: list[StoryInput], shotlists: dict[int, ShotList]) -> dict[int, dict[int, str]]:
        """Every shot's keyframes rendered and recorded; returns each story's first-variant object key per shot."""
        spec = self.spec
        tasks = [KeyframeTask(s.index, s.stem, shot.index, keyframe_prompt(shot.visual, shot.camera, spec.style),
                              shot_seed(spec.seed, s.stem, shot.index), spec.variants)
                 for s in stories if s.index in shotlists for shot in shotlists[s.index].shots]
        keys: dict[int, dict[int, str]] = defaultdict(dict)
        calls: dict[str, CallFigures] = {}
        if not tasks:
            self.figures["diffusion"] = {"batches": [], "mean_batch_images": None}
            return keys
        look = Look(spec.width, spec.height, spec.steps, spec.guidance_scale, spec.negative_prompt)
        stage = KeyframeStage(diffusion, self.ctx.objects, look)
        size = diffusion.max_batch_size
        rendered = 0
        # a second engine only pays for its start when there are several batches for each
        most = ENGINES[1] if math.ceil(sum(t.variants for t in tasks) / size) >= 4 * ENGINES[1] else ENGINES[0]
        per_call = max(1, size // spec.variants)  # shots whose images fill one engine call
        pool = run_pool(stage, dataset(tasks), batch_size=per_call, concurrency=(ENGINES[0], most) if most > ENGINES[0] else ENGINES[0])
        for out in payloads(pool):
            assert isinstance(out, Keyframes)
            if out.call is not None:
                calls[out.call.batch] = out.call
            item = out.task.item
            if out.error or not out.stored:
                self.fail(item, f"shot {out.task.shot}: no keyframe ({out.error or 'nothing rendered'})")
                continue
            for variant, stored in enumerate(out.stored, start=1):
                name = f"{out.task.name}.png" if variant == 1 else f"{out.task.name}.v{variant}.png"
                self.ctx.record_output(item, "keyframes", _renamed(stored, name))
            keys[item][out.task.shot] = out.stored[0].object_key or ""
            rendered += len(out.stored)
            self.report.emit(keyframes_rendered=rendered)
        batches = [{"worker": c.worker, "images": c.images, "engine_calls": c.engine_calls, "stories": c.stories} for c in calls.values()]
        images = sum(b["images"] for b in batches)
        engine_calls = sum(b["engine_calls"] for b in batches)
        self.figures["diffusion"] = {
            "model": diffusion.name, "max_batch_size": size, "batches": batches, "images": images,
            "mean_batch_images": round(images / engine_calls, 3) if engine_calls else None,
            "batches_across_stories": sum(1 for b in batches if b["stories"] > 1),
        }
        return keys

    # -- assembly -----------------------------------------------------------------------------

    def assemble(self, stories: list[StoryInput], shotlists: dict[int, ShotList], keys: dict[int, dict[int, str]]) -> None:
        spec = self.spec
        tasks = []
        for s in stories:
            if s.index in self.failed or s.index not in shotlists:
                continue
            shotlist = shotlists[s.index]
            tasks.append(AnimaticTask(Source(s.index, s.stem, asset_id=s.asset_id), shotlist,
                                      tuple(keys[s.index][shot.index] for shot in shotlist.shots), spec.width, spec.height,
                                      tuple(spec.subtitles), spec.crossfade_s, spec.motion, spec.crf, spec.preset))
        finished = 0
        for out in run_ray(AssembleAnimatic(self.ctx.objects), tasks):
            if isinstance(out, Failed):
                self.fail(out.source.index, out.message)
                continue
            item = out.task.source.index
            self.ctx.record_output(item, "animatic", out.video)
            if out.srt is not None:
                self.ctx.record_output(item, "subtitles", out.srt)
            self.ctx.record_output(item, "storyboard", out.storyboard)
            self.ctx.record_output(item, "shots", out.shots)
            self.ctx.item(item, True)
            finished += 1
            self.report.emit(animatics=finished)

    def report_doc(self, llm: ModelSpec, diffusion: ModelSpec) -> bytes:
        doc = {"settings": self.spec.model_dump(mode="json", exclude={"stories", "asset_ids"}),
               "models": {"llm": llm.name, "diffusion": diffusion.name}, **self.figures,
               "failed": {str(k): v for k, v in sorted(self.failed.items())}}
        return (json.dumps(doc, indent=2) + "\n").encode()


def _renamed(stored: StoredFile, name: str) -> StoredFile:
    """The stored keyframe under its output name (names are metadata until the driver records the asset)."""
    return replace(stored, name=name)
